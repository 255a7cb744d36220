"""The `echodfkd` command line: one sub-command per pipeline step.

Each step lives in `echodfkd/commands/<name>.py` and defines `NAME`, `HELP`, `add_arguments(parser)` and
`run(args) -> int`. Command modules import heavy libraries inside `run`, so `--help` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from types import ModuleType
from typing import NoReturn

import echodfkd.commands as commands_pkg
from echodfkd import __version__
from echodfkd.commands import _flags
from echodfkd.errors import EchoDFKDError

# Pipeline order for `--help`; commands not listed come after, alphabetically.
ORDER = [
    "demo", "phantom", "convert", "check", "info", "teacher", "label", "distill", "sweep", "search",
    "predict", "export", "evaluate", "camus", "report", "echoclip", "noise", "reproduce", "check-run", "bench",
    "serve",
]

# Steps that train or run networks on the CPU (where denormal arithmetic is slow).
TORCH_COMMANDS = {"demo", "teacher", "label", "distill", "sweep", "search", "predict", "bench", "reproduce",
                  "serve", "echoclip", "camus"}


class _Parser(argparse.ArgumentParser):
    """A parser whose errors are one line (no usage block): `echodfkd CMD: error: ... (see --help)`."""

    def error(self, message: str) -> NoReturn:
        """Print one line and exit 2."""
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows '(default: X)' only where there is a default worth reading (not None, False or already said)."""

    def _metavar_formatter(self, action: argparse.Action, default_metavar: str):  # noqa: ANN202 (argparse's)
        """Choices that hold commas (e.g. lv and lv,rv) are shown as {lv|lv,rv}, not the ambiguous {lv,lv,rv}."""
        choices = action.choices
        if action.metavar is None and choices is not None and any("," in str(c) for c in choices):
            shown = "{" + "|".join(map(str, choices)) + "}"
            return lambda size: (shown,) * size if isinstance(size, int) else shown
        return super()._metavar_formatter(action, default_metavar)

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.default in (None, False, argparse.SUPPRESS) or "default" in text:
            return text
        return super()._get_help_string(action)


def _command_modules() -> list[ModuleType]:
    names = [m.name for m in pkgutil.iter_modules(commands_pkg.__path__) if not m.name.startswith("_")]
    names.sort(key=lambda n: (ORDER.index(n) if n in ORDER else len(ORDER), n))
    return [importlib.import_module(f"echodfkd.commands.{n}") for n in names]


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every discovered sub-command."""
    parser = _Parser(
        prog="echodfkd",
        description="EchoDFKD: distil a large echo LV segmenter into a tiny real-time ConvLSTM student, "
        "and evaluate it (Dice/IoU, aFD phase detection, EchoCLIP).",
    )
    parser.add_argument("--version", action="version", version=f"echodfkd {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for mod in _command_modules():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP),
                           formatter_class=_HelpFormatter)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `echodfkd` console script: returns the exit status (never raises SystemExit)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version or a refused argument (one line already printed)
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 2
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    if args.command in TORCH_COMMANDS:
        _flush_denormals()
    name = " ".join(filter(None, (args.command, getattr(args, "teacher_command", None))))
    _flags.CREATED.clear()  # only this invocation's folders
    try:
        return int(args._run(args) or 0)
    except EchoDFKDError as exc:
        print(f"echodfkd {name}: error: {exc}", file=sys.stderr)
        _flags.remove_empty(_flags.CREATED)  # a refused run leaves no empty output folder behind
        return 2
    except OSError as exc:  # safety net: commands check their outputs first, so this is rare
        print(f"echodfkd {name}: error: {_os_error(exc)}", file=sys.stderr)
        _flags.remove_empty(_flags.CREATED)
        return 2
    except KeyboardInterrupt:
        print(f"echodfkd {name}: interrupted (finished work is kept; rerun to resume)", file=sys.stderr)
        return 130


def _os_error(exc: OSError) -> str:
    """One line for an OS error: the file, then the reason."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    return f"{exc.filename}: {reason}" if exc.filename else reason


def _flush_denormals() -> None:
    """Treat denormal floats as zero on CPU: converging weights otherwise slow training many-fold."""
    import torch

    torch.set_flush_denormal(True)


if __name__ == "__main__":
    sys.exit(main())
