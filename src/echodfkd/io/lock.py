"""Output-folder locks: one live run per output folder; a lock left by a dead run is taken over.

`OUT/.echodfkd.lock` records the holder (PID, host, command, start time) for the refusal message, and
the holder keeps an exclusive `flock` on it: the kernel drops that lock when the process dies, SIGKILL
included, so a lock whose flock can be taken is stale whatever PID it names. Where the filesystem has no
flock, a lock naming a PID that is not alive on this host is taken as stale instead.
Processes of a distributed run other than rank 0 (`RANK_VARIABLES`) share rank 0's lock.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Any, Iterator

from echodfkd.errors import EchoDFKDError
from echodfkd.io.atomic import load_json

try:
    import fcntl
except ImportError:  # Windows: PID checks only
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".echodfkd.lock"
_HELD: dict[Path, int] = {}  # lock paths this process holds -> nesting depth


class OutputLocked(EchoDFKDError):
    """Another live run holds the output folder."""


def _alive(pid: int) -> bool:
    """Whether a process with this PID exists on this host."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def _read(path: Path) -> dict[str, Any]:
    holder = load_json(path, default={})
    return holder if isinstance(holder, dict) else {}


def _describe(holder: dict[str, Any]) -> str:
    parts = [f"PID {holder.get('pid', '?')} on {holder.get('host', '?')}"]
    if holder.get("command"):
        parts.append(f"`{holder['command']}`")
    if holder.get("started"):
        parts.append(f"since {holder['started']}")
    return ", ".join(parts)


# Set by Lightning's DDP launcher, torchrun and srun; any non-zero one marks a process that is not rank 0.
RANK_VARIABLES = ("LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "RANK", "SLURM_PROCID")


def _command_line() -> str:
    """`echodfkd COMMAND` when run from the CLI, else the program name (for the refusal message)."""
    prog = Path(sys.argv[0]).name if sys.argv else ""
    if prog in ("echodfkd", "__main__.py") and len(sys.argv) > 1:
        return f"echodfkd {sys.argv[1]}"
    return prog or "python"


def _worker_of_distributed_run() -> bool:
    return any(os.environ.get(k, "0").strip() not in ("", "0") for k in RANK_VARIABLES)


class OutputLock:
    """The held lock of one output folder (see `output_lock`)."""

    def __init__(self, folder: Path, path: Path, fd: int | None):
        self.folder, self.path, self._fd = folder, path, fd

    def clear(self) -> None:
        """Remove everything in the locked folder except the lock itself (for a --fresh start)."""
        for entry in self.folder.iterdir():
            if entry.name == self.path.name:
                continue
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()


def _refuse(folder: Path, path: Path, holder: dict[str, Any]) -> OutputLocked:
    return OutputLocked(f"{folder}: in use by another echodfkd run ({_describe(holder)}; lock {path}); "
                        f"wait for it to finish or choose another output folder")


def _flock(fd: int) -> bool | None:
    """Take the exclusive flock without waiting: True when taken, False when held, None when unsupported."""
    if fcntl is None:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    except OSError as exc:
        if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            return None
        raise


def _acquire(folder: Path, path: Path, command: str) -> int:
    """Open, lock and fill the lock file; return its descriptor (kept open while held)."""
    me = {"pid": os.getpid(), "host": socket.gethostname(), "command": command,
          "started": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    for _ in range(20):  # retried only when another process removed or replaced the file under us
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        taken = None
        try:
            taken = _flock(fd)
            holder = _read(path)
            if taken is False:
                raise _refuse(folder, path, holder)
            if taken is None and holder.get("pid") not in (None, me["pid"]):
                same_host = holder.get("host") == me["host"]
                if not same_host or _alive(int(holder.get("pid", 0))):
                    raise _refuse(folder, path, holder)
            try:
                if os.stat(path).st_ino != os.fstat(fd).st_ino:
                    os.close(fd)  # the holder we waited on removed it; lock the new file instead
                    continue
            except FileNotFoundError:
                os.close(fd)
                continue
            if holder.get("pid") not in (None, me["pid"]):
                print(f"note: {path}: taking over a stale lock of {_describe(holder)} (no longer running)",
                      file=sys.stderr)
            os.ftruncate(fd, 0)
            os.pwrite(fd, (json.dumps(me) + "\n").encode(), 0)
            return fd
        except BaseException as exc:
            if taken and not isinstance(exc, OutputLocked):
                with contextlib.suppress(OSError):
                    path.unlink()  # ours, but unwritten (e.g. a full disk): leave no empty lock behind
            with contextlib.suppress(OSError):
                os.close(fd)
            raise
    raise OutputLocked(f"{path}: could not take the lock (it keeps changing); is another run starting there?")


@contextlib.contextmanager
def output_lock(folder: str | os.PathLike, command: str | None = None, name: str = LOCK_NAME,
                leftovers: str | None = "**/.*.tmp*") -> Iterator[OutputLock]:
    """Hold `folder/.echodfkd.lock` for the block: refuse (one line) while a live run holds it.

    Once held, temporary files that a killed run's atomic writes left (`leftovers`, a glob under the
    folder) are removed: no live run can be writing them. The folder is created if needed and removed
    again at the end when the block left it empty. Re-entrant within a process; a no-op in the worker
    processes of a distributed run.
    """
    folder = Path(folder)
    path = folder / name
    created = not folder.exists()
    if _worker_of_distributed_run():
        yield OutputLock(folder, path, None)
        return
    key = path.absolute()
    if key in _HELD:
        _HELD[key] += 1
        try:
            yield OutputLock(folder, path, None)
        finally:
            _HELD[key] -= 1
        return
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EchoDFKDError(f"{folder}: cannot create the output folder ({exc.strerror or exc})") from None
    try:
        fd = _acquire(folder, path, command if command is not None else _command_line())
    except BaseException as exc:
        if created:
            with contextlib.suppress(OSError):
                folder.rmdir()
        if not isinstance(exc, OSError):
            raise
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise EchoDFKDError(f"{path}: no space left on device for the lock file; free some space and "
                                f"rerun") from None
        raise EchoDFKDError(f"{path}: cannot write the lock file ({exc.strerror or exc})") from None
    _HELD[key] = 1
    try:
        if leftovers:
            _remove_leftovers(folder, leftovers)
        yield OutputLock(folder, path, fd)
    finally:
        del _HELD[key]
        # Unlink while still holding the flock, so no newcomer locks a file that is about to vanish.
        with contextlib.suppress(OSError):
            path.unlink()
        os.close(fd)
        if created:
            with contextlib.suppress(OSError):
                folder.rmdir()  # only succeeds when empty: a refused or failed run leaves nothing behind


def file_lock(path: str | os.PathLike, command: str | None = None) -> contextlib.AbstractContextManager[OutputLock]:
    """Lock for a single output file: `.NAME.echodfkd.lock` beside it (e.g. `check --out report.csv`)."""
    path = Path(path)
    return output_lock(path.parent, command, name=f".{path.name}{LOCK_NAME}", leftovers=f".{path.stem}.*.tmp*")


def _remove_leftovers(folder: Path, pattern: str) -> None:
    """Delete the temporary files (`.NAME.XXXX.tmp.EXT`, see io.atomic) a killed run left in `folder`."""
    for path in folder.glob(pattern):
        if path.is_file() and not path.is_symlink() and ".tmp" in path.name:
            with contextlib.suppress(OSError):
                path.unlink()
