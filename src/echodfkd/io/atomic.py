"""Atomic file writes: write to a temporary name in the same folder, then rename."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from echodfkd.errors import EchoDFKDError


DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.

    A full disk (ENOSPC/EDQUOT inside the block) becomes one EchoDFKDError line naming `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Keep the real extension last so writers that pick a format from it (cv2, np.savez) behave.
    suffix = path.suffix if suffix is None else suffix
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp" + suffix, dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        # mkstemp creates 0600 files; give the result the mode a plain open() would have.
        os.chmod(tmp_path, 0o666 & ~_UMASK)
        os.replace(tmp_path, path)
    except OSError as exc:
        if exc.errno in DISK_FULL:
            raise EchoDFKDError(f"{path}: no space left on device; nothing half-written is kept: free some "
                                f"space and rerun to finish") from None
        raise
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def _read_umask() -> int:
    """The process umask (read once, by setting and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


_UMASK = _read_umask()


def save_npz(path: str | os.PathLike, compressed: bool = True, **arrays: np.ndarray) -> Path:
    """Atomically write arrays to an .npz file."""
    path = Path(path)
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            (np.savez_compressed if compressed else np.savez)(fh, **arrays)
    return path


def save_json(path: str | os.PathLike, obj: Any) -> Path:
    """Atomically write an object as indented JSON."""
    path = Path(path)
    with atomic_path(path, suffix=".json") as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=_json_default) + "\n")
    return path


def save_text(path: str | os.PathLike, text: str) -> Path:
    """Atomically write a text file."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path


_NO_DEFAULT: Any = object()


def load_json(path: str | os.PathLike, error: type[Exception] = ValueError, hint: str = "",
              default: Any = _NO_DEFAULT) -> Any:
    """Parse a JSON file; unreadable or invalid: `error` with one line naming the file, or `default` if given."""
    path = Path(path)
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        if default is not _NO_DEFAULT:
            return default
        raise error(f"{path}: not valid JSON ({exc}){hint}") from None
    except OSError as exc:
        if default is not _NO_DEFAULT:
            return default
        raise error(f"{path}: cannot read ({exc.strerror or exc}){hint}") from None


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
