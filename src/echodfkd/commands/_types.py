"""Argument types of the shared flag vocabulary: each parses one value or raises a one-line ArgumentTypeError.

Light (no torch): `--help` must stay fast. `echodfkd.commands._flags` re-exports every name.
"""

from __future__ import annotations

import argparse
import math
import re
from pathlib import Path
from typing import Any, Callable

_DEVICE = re.compile(r"(cpu|cuda|cuda:\d+|mps|auto)")
TEACHER_MIN_SIZE = 32  # the segmenters downsample 8-16x: below this a frame is a cell or two of features


def _number(text: str, kind: Callable[[str], Any], ok: Callable[[Any], bool], what: str) -> Any:
    """`kind(text)` when it parses, is finite and passes `ok`; else one line saying what was wanted."""
    try:
        value = kind(text)
    except ValueError:
        value = None
    if value is None or (kind is float and not math.isfinite(value)) or not ok(value):
        raise argparse.ArgumentTypeError(f"must be {what}, got {text!r}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1."""
    return _number(text, int, lambda v: v >= 1, "an integer >= 1")


def nonnegative_int(text: str) -> int:
    """An integer >= 0."""
    return _number(text, int, lambda v: v >= 0, "an integer >= 0")


def positive_float(text: str) -> float:
    """A finite number > 0."""
    return _number(text, float, lambda v: v > 0, "a number > 0")


def nonnegative_float(text: str) -> float:
    """A finite number >= 0."""
    return _number(text, float, lambda v: v >= 0, "a number >= 0")


def unit_float(text: str) -> float:
    """A finite number in [0, 1]."""
    return _number(text, float, lambda v: 0 <= v <= 1, "a number in [0, 1]")


def int_in(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: an integer in [low, high]."""

    def parse(text: str) -> int:
        return _number(text, int, lambda v: low <= v <= high, f"an integer in [{low}, {high}]")

    parse.__name__ = f"integer in [{low}, {high}]"
    return parse


def float_in(low: float, high: float) -> Callable[[str], float]:
    """An argparse type: a finite number in [low, high]."""

    def parse(text: str) -> float:
        return _number(text, float, lambda v: low <= v <= high, f"a number in [{low:g}, {high:g}]")

    parse.__name__ = f"number in [{low:g}, {high:g}]"
    return parse


def frame_size(text: str) -> int:
    """A frame size in pixels, >= 1 (the depth rule is `_flags.check_size`, once the student's blocks are known)."""
    return _number(text, int, lambda v: v >= 1, "a frame size >= 1 pixel")


def teacher_size(text: str) -> int:
    """A teacher's frame size in pixels, >= TEACHER_MIN_SIZE."""
    return _number(text, int, lambda v: v >= TEACHER_MIN_SIZE,
                   f"a frame size >= {TEACHER_MIN_SIZE} pixels for a teacher (its features are 8-16x smaller)")


def _existing(text: str, folder: bool) -> Path:
    """`text` as a path that exists and is a folder (or, with folder=False, a file)."""
    path = Path(text)
    kind, other = ("folder", "file") if folder else ("file", "folder")
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{text}: {kind} not found")
    if path.is_dir() != folder:
        raise argparse.ArgumentTypeError(f"{text}: is a {other}, not a {kind}")
    return path


def existing_file(text: str) -> Path:
    """A file that exists."""
    return _existing(text, folder=False)


def existing_dir(text: str) -> Path:
    """A folder that exists."""
    return _existing(text, folder=True)


def existing_path(text: str) -> Path:
    """A file or folder that exists."""
    path = Path(text)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{text}: not found")
    return path


def data_path(text: str) -> str:
    """A dataset path that exists (folder or file), kept as given."""
    return str(existing_path(text))


def file_path(text: str) -> str:
    """A file that exists, kept as given."""
    return str(existing_file(text))


def dir_path(text: str) -> str:
    """A folder that exists, kept as given."""
    return str(existing_dir(text))


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
