"""The ``simgan`` command: a thin layer over the Python API.

Each subcommand lives in its own module of this package and is imported only when used, so
``simgan --help`` is quick. Bad input surfaces as one line on stderr and exit status 2.
"""

from __future__ import annotations

import errno
import importlib
import sys

import click

from ..errors import Interrupted, SimganError

# name -> (module, attribute, one-line help shown by `simgan --help`)
COMMANDS = {
    "simulate": ("simgan.cli.simulate", "simulate", "Render labelled synthetic (or target-domain) images."),
    "train": ("simgan.cli.train", "train", "Train a refiner R against a local discriminator D (Algorithm 1)."),
    "refine": ("simgan.cli.refine", "refine", "Refine a whole dataset with a trained run; labels are kept."),
    "evaluate": ("simgan.cli.evaluate", "evaluate", "Measure refinement: gaze, hand pose or any label's task, realism, label preservation."),
    "demo": ("simgan.cli.demo", "demo", "The experiments end to end on built-in data: eyes (gaze, §3.1), digits, hands (§3.2)."),
    "ablate": ("simgan.cli.ablate", "ablate", "Train the paper's ablation variants and compare them."),
    "turing": ("simgan.cli.turing", "turing", "The visual Turing test (§3.1) as a local web page."),
    "convert": ("simgan.cli.convert", "convert", "Convert UnityEyes, MPIIGaze, NYU hand pose, HDF5 or NPZ data to the interchange format."),
    "export": ("simgan.cli.export", "export", "Write a run's refiner as one .safetensors file to share."),
    "presets": ("simgan.cli.presets", "presets", "Show the presets: networks, receptive fields, settings."),
    "bench": ("simgan.cli.bench", "bench", "Measure training and refining speed against this machine's roofline."),
}


class LazyGroup(click.Group):
    def __init__(self, *args, lazy: dict | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy = lazy or {}

    def list_commands(self, ctx):
        return sorted(set(super().list_commands(ctx)) | set(self.lazy))

    def get_command(self, ctx, name):
        if name in self.commands:
            return self.commands[name]
        if name not in self.lazy:
            return None
        module, attr = self.lazy[name][:2]
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name == module:
                return None
            raise
        cmd = getattr(mod, attr)
        self.commands[name] = cmd
        return cmd

    def format_commands(self, ctx, formatter):
        # Short help from the table above: listing commands imports nothing heavy.
        rows = []
        for name in self.list_commands(ctx):
            if name in self.lazy:
                rows.append((name, self.lazy[name][2]))
            else:
                cmd = self.get_command(ctx, name)
                if cmd is not None and not cmd.hidden:
                    rows.append((name, cmd.get_short_help_str(limit=formatter.width)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="simgan")
def app():
    """simgan: make synthetic training images look real (SimGAN, Shrivastava et al., CVPR 2017).

    Train a refiner on your simulator's labelled images and unlabelled real images, refine the
    whole synthetic set with its labels kept, and measure the result. Start with `simgan demo`.
    """


def _usage_message(exc: click.ClickException) -> str:
    """click's usage error as one line: the command, then the message."""
    msg = exc.format_message()
    ctx = getattr(exc, "ctx", None)
    if ctx is not None and ctx.command_path and ctx.command_path != "simgan":
        msg = f"{ctx.command_path[len('simgan '):] if ctx.command_path.startswith('simgan ') else ctx.command_path}: {msg}"
    return " ".join(msg.split())


def main(argv=None) -> None:
    try:
        app.main(args=argv, prog_name="simgan", standalone_mode=False)
    except SimganError as exc:
        click.echo(f"simgan: error: {exc}", err=True)
        sys.exit(2)
    except Interrupted as exc:
        click.echo(f"simgan: interrupted: {exc}", err=True)
        sys.exit(130)
    except click.exceptions.Abort:
        click.echo("simgan: aborted", err=True)
        sys.exit(130)
    except click.exceptions.NoArgsIsHelpError as exc:
        click.echo(exc.ctx.get_help() if exc.ctx is not None else exc.format_message())
        sys.exit(0)
    except click.ClickException as exc:
        # Usage errors (a bad flag value, a missing option, an unknown command) and click's file
        # errors: the same one line and exit status 2 as every other bad input.
        click.echo(f"simgan: error: {_usage_message(exc)} (see --help)", err=True)
        sys.exit(2)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("simgan: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(1)
    except OSError as exc:
        if exc.errno not in STORAGE_ERRORS:
            raise
        click.echo(f"simgan: error: {storage_message(exc, _out_arg(sys.argv[1:] if argv is None else argv))}",
                   err=True)
        sys.exit(2)


# A full disk or a read-only file system is not bad input, but at scale users meet it: one line
# naming the path and what to do, and what was written so far is kept for the rerun.
STORAGE_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


def _out_arg(argv) -> str | None:
    """The command's ``--out`` value, to name where a write failed when the error does not."""
    args = [str(a) for a in argv]
    for i, a in enumerate(args):
        if a in ("--out", "-o") and i + 1 < len(args):
            return args[i + 1]
        if a.startswith("--out="):
            return a.split("=", 1)[1]
    return None


def storage_message(exc: OSError, out: str | None = None) -> str:
    where = out or exc.filename or "the output"
    if exc.errno == errno.EROFS:
        return (f"cannot write {where}: the file system is read-only; choose an --out on a writable one "
                "(nothing was changed)")
    what = "no space left on the device" if exc.errno == errno.ENOSPC else "the disk quota is exhausted"
    return (f"cannot write {where}: {what}; free space there (or choose another --out) and rerun the same "
            "command: an unfinished refine continues from its OUT.partial, a run (with --resume) from its last checkpoint")
