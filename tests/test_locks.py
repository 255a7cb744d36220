"""Two runs on one output folder: the lock with the holder's PID, stale locks taken over, every writing
command refusing a held folder (split from test_faults)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from echodfkd.cli import main
from echodfkd.io.lock import LOCK_NAME, output_lock
from fault_support import ENV, phantom_folder
from fault_support import cli as _cli
from fault_support import temp_files as _temp_files

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def phantom_ref(tmp_path_factory) -> Path:
    return phantom_folder(tmp_path_factory)


# ------------------------------------------------------------------------------------------ locks
HOLD = ("import sys, time\nfrom echodfkd.io.lock import output_lock\n"
        "with output_lock(sys.argv[1], command='holder'):\n    print('held', flush=True)\n    time.sleep(120)\n")


def _holder(folder: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], env=ENV, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_second_run_on_a_held_folder_is_refused_then_the_dead_holders_lock_is_taken_over(tmp_path):
    out = tmp_path / "ph"
    holder = _holder(out)
    try:
        refused = subprocess.run(_cli("phantom", "--out", out, "--videos", "1", "--size", "32", "--frames", "16"),
                                 env=ENV, capture_output=True, text=True, timeout=120)
        assert refused.returncode == 2
        lines = refused.stderr.strip().splitlines()
        assert len(lines) == 1 and "in use by another echodfkd run" in lines[0]
        assert f"PID {holder.pid} on {socket.gethostname()}" in lines[0] and "`holder`" in lines[0]
        assert not (out / "Videos").exists()  # refused before writing anything
    finally:
        holder.kill()  # SIGKILL: the lock file stays, naming a dead PID
        holder.wait()
    assert json.loads((out / LOCK_NAME).read_text())["pid"] == holder.pid
    done = subprocess.run(_cli("phantom", "--out", out, "--videos", "1", "--size", "32", "--frames", "16"),
                          env=ENV, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"taking over a stale lock of PID {holder.pid}" in done.stderr
    assert (out / "FileList.csv").is_file() and not (out / LOCK_NAME).exists()


@pytest.mark.parametrize("argv", [
    ["phantom", "--out", "{out}"], ["check", "{data}", "--csv", "{out}/report.csv"], ["label", "{data}", "--teacher",
    "{ckpt}", "--out", "{out}"], ["distill", "--data", "{data}", "--targets", "{dir}", "--out", "{out}"],
    ["predict", "{data}", "--student", "{dir}", "--out", "{out}"], ["evaluate", "--data", "{data}", "--predictions",
    "{dir}", "--out", "{out}"], ["demo", "--out", "{out}"], ["convert", "{data}/Videos", "--out", "{out}"],
    ["reproduce", "--dynamic", "{data}", "--synthetic", "{data}", "--teacher", "{ckpt}", "--out", "{out}"]],
    ids=lambda a: a[0])
def test_every_writing_command_refuses_a_held_folder(argv, phantom_ref, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "placeholder").mkdir()  # inputs that only have to exist: the lock is refused before they are read
    (tmp_path / "x.pt").write_bytes(b"")
    argv = [a.format(out=out, data=phantom_ref, dir=tmp_path / "placeholder", ckpt=tmp_path / "x.pt") for a in argv]
    lock = (out / ".report.csv.echodfkd.lock") if argv[0] == "check" else out
    with (output_lock(out, command="holder") if argv[0] != "check" else
          _file_lock(out / "report.csv")):
        # The holder is this process: pretend it is another live one by faking the recorded PID's liveness.
        with _as_other_process():
            assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "in use by another echodfkd run" in err[-1], (lock, err)
    assert sorted(p.name for p in out.iterdir()) == []  # nothing written, the lock released


def _file_lock(path: Path):
    from echodfkd.io.lock import file_lock

    return file_lock(path, command="holder")


class _as_other_process:
    """Forget that this process holds its locks, so a nested acquire behaves like a second process's."""

    def __enter__(self):
        import echodfkd.io.lock as lock

        self._held = dict(lock._HELD)
        lock._HELD.clear()

    def __exit__(self, *exc):
        import echodfkd.io.lock as lock

        lock._HELD.update(self._held)


def test_lock_is_reentrant_clears_for_fresh_runs_and_removes_its_empty_folder(tmp_path):
    out = tmp_path / "new"
    with output_lock(out) as lock:
        (out / "old").mkdir()
        (out / "old" / "a.npz").write_bytes(b"x")
        (out / ".b.k2j4_x9q.tmp.npz").write_bytes(b"half")
        with output_lock(out):  # the same process: no refusal
            pass
        assert (out / LOCK_NAME).is_file()
        lock.clear()  # what `demo --fresh` does
        assert [p.name for p in out.iterdir()] == [LOCK_NAME]
    assert not out.exists()  # created for the lock and left empty: removed
    out.mkdir()
    (out / "sub").mkdir()
    (out / "sub" / ".c.abcdefgh.tmp.avi").write_bytes(b"half")  # what a killed atomic write leaves
    with output_lock(out):
        assert not _temp_files(out)
    assert out.is_dir() and not (out / LOCK_NAME).exists()
