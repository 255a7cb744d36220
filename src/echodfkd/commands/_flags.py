"""The shared flag vocabulary: one helper per flag, so every command spells and means it the same way.

`SHARED_FLAGS` below is the table docs/cli.md shows. Old spellings stay one release as hidden aliases that
print one line, "warning: --x is deprecated; use --y". This module is light (no torch): `--help` must stay fast.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

from echodfkd.commands._types import (TEACHER_MIN_SIZE, data_path, device, dir_path, duration,  # noqa: F401
                                      existing_dir, existing_file, existing_path, file_path, float_in, frame_size,
                                      int_in, nonnegative_float, nonnegative_int, positive_float, positive_int,
                                      teacher_size, unit_float)
from echodfkd.errors import EchoDFKDError

PRECISIONS = ("fp32", "bf16", "auto")

#: (flag, meaning): the table at the top of docs/cli.md.
SHARED_FLAGS = (
    ("`DATA` / `--data DIR`", "a dataset folder: positional, or the option (not both)"),
    ("`--out DIR`", "always a folder, created if missing and checked writable before any work"),
    ("`--student RUN`", "a student run folder (config.json + model.safetensors); `--model` is a deprecated alias"),
    ("`--teacher CKPT`", "a teacher checkpoint file"),
    ("`--teacher-arch ARCH`", "the teacher's architecture (default: the one the checkpoint records)"),
    ("`--echoclip MODEL`", "an open_clip model: hf-hub:ORG/NAME, local-dir:DIR or a checkpoint file"),
    ("`--device D`", "cpu, cuda, cuda:N, mps or auto (default cpu everywhere)"),
    ("`--precision P`", "fp32, bf16 or auto (the fastest that is accurate on this hardware); predict also has mixed "
                        "(bf16 convolutions, fp32 state)"),
    ("`--compile`", "off by default: predict/serve build the ahead-of-time compiled CPU engine, distill "
                    "torch.compiles its training step; bench times the compiled engine unless --no-compile"),
    ("`--workers N`", "worker processes (>= 1); DataLoader workers are `--loader-workers`"),
    ("`--json`", "print the result as JSON on stdout"),
    ("`--max-time T`", "wall-clock budget: seconds or DD:HH:MM:SS"),
    ("`--skip-bad`", "unreadable input clips are warnings with exit 0 instead of exit 1"),
)


# ---------------------------------------------------------------- checks once more is known
def check_size(size: int | None, blocks: int, flag: str = "--size") -> None:
    """Refuse a frame size the student's depth cannot stream (one line naming the flag)."""
    if size is None:
        return
    from echodfkd.models.student import check_frame_size  # lazy: the model module imports torch

    try:
        check_frame_size(int(size), int(blocks))
    except (ValueError, EchoDFKDError) as exc:
        raise EchoDFKDError(f"{flag} {size}: {exc}") from None


# ---------------------------------------------------------------- output folders
def check_writable_dir(path: str | os.PathLike, keep: bool = True) -> Path:
    """Create `path` as a folder and prove a file can be written in it; any OS error becomes one line.

    `keep=False` removes again the folders this check created (for commands whose output lock creates
    the folder and removes it when a run leaves it empty)."""
    path = Path(path)
    created = [p for p in (path, *path.parents) if not p.exists()]
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
    finally:
        if not keep:
            remove_empty(created)
    CREATED.extend(created)
    return path


#: Folders that check_writable_dir created in this process (deepest first), so that a command refused after
#: its output check leaves no empty folder behind (cli.main calls remove_empty on them).
CREATED: list[Path] = []


def remove_empty(folders: list[Path]) -> None:
    """Remove each folder of `folders` (deepest first) that is still empty; others are left alone."""
    for folder in folders:
        with contextlib.suppress(OSError):
            folder.rmdir()  # only succeeds on an empty folder


def check_out_target(path: str | os.PathLike) -> Path:
    """Refuse an output folder that could not be created or written, creating nothing (for dry runs)."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise EchoDFKDError(f"{path}: exists and is a file; --out must be a folder")
    ancestor = next((p for p in (path, *path.parents) if p.exists()), Path("."))
    if not ancestor.is_dir():
        raise EchoDFKDError(f"{path}: cannot write here ({ancestor} is a file)")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise EchoDFKDError(f"{path}: cannot write here (Permission denied)")
    return path


def check_file_target(path: str | os.PathLike, flag: str) -> Path:
    """Refuse an output file that is a folder or sits where no file can be written (before any work)."""
    path = Path(path)
    if path.is_dir():
        raise EchoDFKDError(f"{path}: is a folder; {flag} names the file to write")
    ancestor = next((p for p in path.parents if p.exists()), Path("."))
    if not ancestor.is_dir():
        raise EchoDFKDError(f"{path}: cannot write here ({ancestor} is a file)")
    check_writable_dir(path.parent)
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
             help: str = "dataset folder (FileList.csv + Videos/)", type: Callable[[str], Any] = data_path) -> None:
    """`DATA` positional, also accepted as `--data DATA` (one of them; required unless told otherwise)."""
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument("data", nargs="?", default=None, metavar="DATA", action=_DataPositional, type=type, help=help)
    group.add_argument("--data", dest="data", metavar="DATA", default=None, type=type, help="the same, as an option")


def add_out(parser: argparse.ArgumentParser, what: str = "output", required: bool = True, note: str = "") -> None:
    """`--out DIR`: always a folder (created if missing); the help reads 'WHAT folder (NOTE)'."""
    parser.add_argument("--out", required=required, metavar="DIR", default=None,
                        help=f"{what} folder" + (f" ({note})" if note else ""))


class _Deprecated(argparse.Action):
    """An old spelling kept for one release: stores into the new flag's dest and says so on stderr."""

    def __init__(self, *args: Any, new: str = "", convert: Callable[[Any], Any] | None = None,
                 constant: Any = None, **kwargs: Any) -> None:
        self.new, self.convert, self.constant = new, convert, constant
        super().__init__(*args, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        old = option_string or self.metavar or self.dest
        print(f"{parser.prog}: warning: {old} is deprecated; use {self.new}", file=sys.stderr)
        if self.nargs == 0:
            values = self.constant
        setattr(namespace, self.dest, self.convert(values) if self.convert else values)


def add_deprecated(parser: argparse.ArgumentParser | Any, old: str, new: str, dest: str,
                   flag: bool = False, **kwargs: Any) -> None:
    """A hidden old spelling `old` of the flag `new` (same dest); `flag`: it takes no value (store `const`)."""
    if flag:
        kwargs = {"nargs": 0, "constant": kwargs.pop("const", True), **kwargs}
    parser.add_argument(old, dest=dest, action=_Deprecated, new=new, default=argparse.SUPPRESS,
                        help=argparse.SUPPRESS, **kwargs)


def add_deprecated_positional(parser: argparse.ArgumentParser, dest: str, new: str, metavar: str) -> None:
    """A hidden, optional positional kept for one release (e.g. `phantom OUT` for `phantom --out OUT`)."""
    parser.add_argument(f"_{dest}_positional", nargs="?", metavar=metavar, action=_DeprecatedPositional,
                        new=new, target=dest, default=argparse.SUPPRESS, help=argparse.SUPPRESS)


class _DeprecatedPositional(argparse.Action):
    """Stores an old positional into the new flag's dest (refusing both at once) and says so on stderr."""

    def __init__(self, *args: Any, new: str = "", target: str = "", **kwargs: Any) -> None:
        self.new, self.target = new, target
        super().__init__(*args, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        if getattr(namespace, self.target, None) not in (None, values):
            parser.error(f"{self.metavar} given twice (positional and {self.new})")
        print(f"{parser.prog}: warning: the positional {self.metavar} is deprecated; use {self.new} "
              f"{self.metavar}", file=sys.stderr)
        setattr(namespace, self.target, values)


def require(args: argparse.Namespace, dest: str, flag: str) -> Any:
    """The value of a flag that is required but cannot be marked so (it has a deprecated positional)."""
    value = getattr(args, dest, None)
    if value in (None, ""):
        raise EchoDFKDError(f"the following arguments are required: {flag}")
    return value


def add_student(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """`--student RUN`, a student run directory; `--model` is a hidden, deprecated alias."""
    group = parser.add_mutually_exclusive_group(required=required)
    group.add_argument("--student", metavar="RUN", default=None, type=dir_path,
                       help="student run directory (config.json + model.safetensors)")
    group.add_argument("--model", dest="student", metavar="RUN", action=_Deprecated, new="--student",
                       type=dir_path, help=argparse.SUPPRESS)


def add_teacher(parser: argparse.ArgumentParser, required: bool = False,
                help: str = "teacher checkpoint (.pt, EchoNet's format or ours)") -> None:
    """`--teacher CKPT`, a teacher checkpoint file (that exists)."""
    parser.add_argument("--teacher", metavar="CKPT", type=file_path, required=required, default=None, help=help)


def add_teacher_arch(parser: argparse.ArgumentParser, default: str | None = None, old: str | None = None,
                     help: str | None = None) -> None:
    """`--teacher-arch ARCH`, the teacher's architecture (default: what the checkpoint records);
    `old` names a deprecated spelling (e.g. --arch)."""
    from echodfkd.teacher.archs import ARCH_NAMES as ARCH_CHOICES

    text = help or f"teacher architecture ({', '.join(ARCH_CHOICES)}; default: the checkpoint's, else " \
                   "deeplabv3_resnet50)"
    parser.add_argument("--teacher-arch", metavar="ARCH", choices=ARCH_CHOICES, default=default, help=text)
    if old:
        add_deprecated(parser, old, "--teacher-arch", "teacher_arch", choices=ARCH_CHOICES, metavar="ARCH")


def add_echoclip(parser: argparse.ArgumentParser, default: str | None = None, help: str | None = None) -> None:
    """`--echoclip MODEL`, an open_clip model (hf-hub:ORG/NAME, local-dir:DIR or a checkpoint file)."""
    parser.add_argument("--echoclip", metavar="MODEL", default=default,
                        help=help or "open_clip model: hf-hub:ORG/NAME, local-dir:DIR, or a checkpoint file")


def add_device(parser: argparse.ArgumentParser, default: str = "cpu", help: str | None = None) -> None:
    """`--device`: cpu, cuda, cuda:N, mps or auto."""
    parser.add_argument("--device", type=device, default=default,
                        help=help or "torch device: cpu, cuda, cuda:N, mps, auto")


def add_precision(parser: argparse.ArgumentParser, default: str | None = "fp32", help: str | None = None,
                  extra: tuple[str, ...] = ()) -> None:
    """`--precision {fp32,bf16,auto}` (plus a command's `extra` precisions, e.g. an engine's mixed one)."""
    parser.add_argument("--precision", choices=(*PRECISIONS, *extra), default=default,
                        help=help or "arithmetic precision (auto: bf16 where the hardware runs it fast)")


def add_compile(parser: argparse.ArgumentParser, help: str | None = None) -> None:
    """`--compile/--no-compile`: the ahead-of-time compiled CPU engine, off by default."""
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=False,
                        help=help or "CPU: run the ahead-of-time compiled engine (needs a C++ compiler; built "
                                     "once per model/size/precision and cached)")


def add_workers(parser: argparse.ArgumentParser, default: int | None = 1, help: str = "worker processes") -> None:
    """`--workers N`: worker processes, >= 1."""
    parser.add_argument("--workers", type=positive_int, default=default, metavar="N", help=help)


def add_json(parser: argparse.ArgumentParser, help: str = "print the result as JSON") -> None:
    """`--json`: print the result as JSON instead of text."""
    parser.add_argument("--json", action="store_true", help=help)


def add_max_time(parser: argparse.ArgumentParser, help: str = "stop after this long (seconds or DD:HH:MM:SS)") -> None:
    """`--max-time T`: a wall-clock budget in seconds or DD:HH:MM:SS."""
    parser.add_argument("--max-time", type=duration, default=None, metavar="T", help=help)


def stdout_for_json(args: argparse.Namespace) -> Any:
    """With --json, a context sending the work's progress lines to stderr, so stdout holds only the JSON."""
    return contextlib.redirect_stdout(sys.stderr) if getattr(args, "json", False) else contextlib.nullcontext()


def add_skip_bad(parser: argparse.ArgumentParser) -> None:
    """`--skip-bad`: unreadable input clips are warnings and the exit status stays 0."""
    parser.add_argument("--skip-bad", action="store_true",
                        help="exit 0 even when some input clips are unreadable (they are skipped with a warning "
                             "either way; without it the exit status is 1)")


def partial_exit(failed: list | dict, skip_bad: bool, prog: str) -> int:
    """The exit status of a run that skipped unreadable clips: one warning line each, then 1 (0 with --skip-bad)."""
    items = failed.items() if isinstance(failed, dict) else failed
    for name, reason in items:
        print(f"echodfkd {prog}: warning: skipped {name}: {reason}", file=sys.stderr)
    return 0 if skip_bad or not failed else 1
