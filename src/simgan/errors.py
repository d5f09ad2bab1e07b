"""The one exception type that user-facing code raises for bad input.

The CLI turns a :class:`SimganError` into a single line on stderr and exit code 2, so every message
must name the problem (and the file or flag involved) in one sentence.
"""


class SimganError(Exception):
    """Bad input or an impossible request, explained in one line."""

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))


class Interrupted(Exception):
    """A long command stopped by the user (Ctrl-C); the message says where it stopped and how to
    go on."""
