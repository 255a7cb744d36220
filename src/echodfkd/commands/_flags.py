"""The shared flag vocabulary: one helper per flag, so every command spells and means it the same way.

| flag | meaning |
|---|---|
| `DATA` / `--data DIR` | a dataset folder (positional, or the option; not both) |
| `--out DIR` | always a folder |
| `--student RUN` | a student run directory (`--model` is a deprecated alias) |
| `--teacher CKPT` | a teacher checkpoint file |
| `--teacher-arch ARCH` | the teacher's torchvision architecture |
| `--device` | cpu, cuda, cuda:N, mps or auto (default cpu) |
| `--precision` | fp32, bf16 or auto |
| `--workers N` | worker processes (>= 1) |
| `--json` | print the result as JSON |
| `--max-time T` | wall-clock budget: seconds or DD:HH:MM:SS |

This module is light (no torch): `--help` must stay fast.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

from echodfkd.errors import EchoDFKDError

PRECISIONS = ("fp32", "bf16", "auto")
_DEVICE = re.compile(r"(cpu|cuda|cuda:\d+|mps|auto)")


# ---------------------------------------------------------------- argparse types
def positive_int(text: str) -> int:
    """An integer >= 1."""
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return value


def nonnegative_int(text: str) -> int:
    """An integer >= 0."""
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, got {text!r}")
    return value


def unit_float(text: str) -> float:
    """A finite number in [0, 1]."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:  # also refuses NaN
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {text!r}")
    return value


def existing_dir(text: str) -> Path:
    """A folder that exists."""
    path = Path(text)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{text}: folder not found")
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: is a file, not a folder")
    return path


def existing_path(text: str) -> Path:
    """A file or folder that exists."""
    path = Path(text)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{text}: not found")
    return path


def device(text: str) -> str:
    """A torch device name: cpu, cuda, cuda:N, mps or auto."""
    if not _DEVICE.fullmatch(text):
        raise argparse.ArgumentTypeError(f"unknown device {text!r} (use cpu, cuda, cuda:N, mps or auto)")
    return text


def duration(text: str) -> str:
    """A positive duration (seconds or DD:HH:MM:SS), normalised to 'DD:HH:MM:SS'."""
    from echodfkd.distill.config import format_duration, parse_duration  # lazy: distill imports torch

    try:
        return format_duration(parse_duration(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: use a positive number of seconds or DD:HH:MM:SS") from None


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None


# ---------------------------------------------------------------- output folders
def check_writable_dir(path: str | os.PathLike) -> Path:
    """Create `path` as a folder and prove a file can be written in it; any OS error becomes one line."""
    path = Path(path)
    try:
        if path.exists() and not path.is_dir():
            raise EchoDFKDError(f"{path}: exists and is a file; --out must be a folder")
        path.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=path)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise EchoDFKDError(f"{path}: cannot write here ({reason})") from None
    return path


# ---------------------------------------------------------------- flag helpers
class _DataPositional(argparse.Action):
    """DATA positional that never overwrites a value --data already gave (argparse calls it with None)."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        if values is not None:
            setattr(namespace, self.dest, values)
        elif not hasattr(namespace, self.dest):
            setattr(namespace, self.dest, None)


def add_data(parser: argparse.ArgumentParser, required: bool = True,
             help: str = "dataset folder (FileList.csv + Videos/)") -> None:
    """`DATA` positional, also accepted as `--data DATA` (one of them; required unless told otherwise)."""
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument("data", nargs="?", default=None, metavar="DATA", action=_DataPositional, help=help)
    group.add_argument("--data", dest="data", metavar="DATA", default=None, help="the same, as an option")


def add_out(parser: argparse.ArgumentParser, what: str = "output", required: bool = True) -> None:
    """`--out DIR`: always a folder (created if missing)."""
    parser.add_argument("--out", required=required, metavar="DIR", default=None, help=f"{what} folder")


class _Deprecated(argparse.Action):
    """An old spelling kept for one release: stores into the new flag's dest and says so on stderr."""

    def __init__(self, *args: Any, new: str = "", **kwargs: Any) -> None:
        self.new = new
        super().__init__(*args, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        print(f"{parser.prog}: warning: {option_string} is deprecated; use {self.new}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_student(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """`--student RUN`, a student run directory; `--model` is a hidden, deprecated alias."""
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument("--student", metavar="RUN", default=None,
                       help="student run directory (config.json + model.safetensors)")
    group.add_argument("--model", dest="student", metavar="RUN", action=_Deprecated, new="--student",
                       help=argparse.SUPPRESS)


def add_teacher(parser: argparse.ArgumentParser, required: bool = False) -> None:
    """`--teacher CKPT`, a teacher checkpoint file."""
    parser.add_argument("--teacher", metavar="CKPT", required=required, default=None,
                        help="teacher checkpoint (.pt, EchoNet's format or ours)")


def add_teacher_arch(parser: argparse.ArgumentParser) -> None:
    """`--teacher-arch ARCH`, the teacher's architecture (default: what the checkpoint records)."""
    from echodfkd.commands.teacher import ARCH_CHOICES

    parser.add_argument("--teacher-arch", metavar="ARCH", choices=ARCH_CHOICES, default=None,
                        help=f"teacher architecture ({', '.join(ARCH_CHOICES)}; default: the checkpoint's)")


def add_device(parser: argparse.ArgumentParser, default: str = "cpu") -> None:
    """`--device`: cpu, cuda, cuda:N, mps or auto."""
    parser.add_argument("--device", type=device, default=default, help="torch device: cpu, cuda, cuda:N, mps, auto")


def add_precision(parser: argparse.ArgumentParser, default: str = "fp32") -> None:
    """`--precision {fp32,bf16,auto}`."""
    parser.add_argument("--precision", choices=PRECISIONS, default=default,
                        help="arithmetic precision (auto: bf16 where the hardware runs it fast)")


def add_workers(parser: argparse.ArgumentParser, default: int | None = 1) -> None:
    """`--workers N`: worker processes, >= 1."""
    parser.add_argument("--workers", type=positive_int, default=default, metavar="N", help="worker processes")


def add_json(parser: argparse.ArgumentParser) -> None:
    """`--json`: print the result as JSON instead of text."""
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def add_max_time(parser: argparse.ArgumentParser) -> None:
    """`--max-time T`: a wall-clock budget in seconds or DD:HH:MM:SS."""
    parser.add_argument("--max-time", type=duration, default=None, metavar="T",
                        help="stop after this long (seconds or DD:HH:MM:SS)")
