"""Checks on the paths a command reads and writes, shared by every command.

An output must never overlap an input: writing a run or a refined set inside the folder it
reads would change the input (a ``refined/`` folder joining the images, sample PNGs joining the
real set), and reading from inside an output's ``OUT.partial`` would let simgan remove its own
input. :func:`check_no_overlap` refuses both directions before anything is written.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import SimganError


def _real(p: str | os.PathLike) -> Path:
    return Path(os.path.realpath(os.path.abspath(os.fspath(p))))


def _inside(a: Path, b: Path) -> bool:
    """``a`` is ``b`` or lies below it."""
    return a == b or b in a.parents


def partial_of(out: str | os.PathLike) -> Path:
    """The work folder of output ``out``: ``OUT.partial`` beside it."""
    out = Path(out)
    return out.with_name(out.name + ".partial")


def check_no_overlap(inputs: dict[str, str | os.PathLike | None],
                     outputs: dict[str, str | os.PathLike | None], *, partial: bool = True) -> None:
    """Refuse an output that is, or lies inside, an input, and an input inside an output.

    ``inputs`` / ``outputs`` map the flag that named a path (``"--input"``) to the path; None
    entries are skipped. With ``partial`` each output's ``OUT.partial`` counts as output too.
    Symbolic links are resolved, so a link into an input is caught as well.
    """
    ins = [(flag, _real(p)) for flag, p in inputs.items() if p is not None]
    outs = []
    for flag, p in outputs.items():
        if p is None:
            continue
        outs.append((flag, p, _real(p)))
        if partial:
            outs.append((flag, partial_of(p), _real(partial_of(p))))
    for oflag, oshown, o in outs:
        for iflag, i in ins:
            if _inside(o, i):
                raise SimganError(f"{oflag} {oshown} lies inside {iflag} {inputs[iflag]}: an output must not be "
                                  f"written into an input; choose a folder outside it")
            if _inside(i, o):
                raise SimganError(f"{iflag} {inputs[iflag]} lies inside {oflag} {oshown}: an input must not be "
                                  f"inside an output folder; move it or choose another output")
    seen = {}
    for flag, p in outputs.items():
        if p is None:
            continue
        r = _real(p)
        for other, q in seen.items():
            if _inside(r, q) or _inside(q, r):
                raise SimganError(f"{flag} {p} and {other} overlap; give them separate folders")
        seen[flag] = r
