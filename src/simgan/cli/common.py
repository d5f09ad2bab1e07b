"""Options shared by several commands."""

from __future__ import annotations

import click

from ..config import PRECISIONS

device_option = click.option(
    "--device", default=None, metavar="cpu|cuda[:N]",
    help="Where to run (default: CUDA if present, else CPU).")
precision_option = click.option(
    "--precision", type=click.Choice(PRECISIONS), default=None,
    help="Float format (auto: bf16 where the hardware has it natively, else fp32 on CPU, fp16 on older GPUs).")


def set_nested(d: dict, section: str, key: str, value) -> None:
    d.setdefault(section, {})[key] = value


def is_main_process() -> bool:
    """False in the non-zero ranks of a torchrun launch (only rank 0 reports)."""
    import os
    return os.environ.get("RANK", "0") == "0"


def options(*decorators):
    """Several click options as one decorator (for options that several commands share)."""
    def decorate(f):
        for option in reversed(decorators):
            f = option(f)
        return f

    return decorate
