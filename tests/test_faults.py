"""Faults: runs killed (SIGKILL, SIGINT) and resumed, a full disk, two runs on one output folder.

The kill tests start the real CLI in a subprocess, kill it once its first results are on disk, resume it,
and compare with an uninterrupted run; each fails when resuming is broken (see docs/faults.md).
The full-disk tests mount a small tmpfs (root only; skipped elsewhere) or make the writer raise ENOSPC.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch

from distill_data import make_dataset
from fault_support import ENV, PHANTOM, phantom_folder
from fault_support import cli as _cli
from fault_support import temp_files as _temp_files
from echodfkd.cli import main
from echodfkd.io.lock import output_lock
from tiny_models import npz_arrays

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _kill_when(cmd: list[str], ready: Callable[[], bool], sig: int = signal.SIGKILL, timeout: float = 120) -> int:
    """Start `cmd`, send `sig` as soon as `ready()` holds, return its exit status (fails if it ends first)."""
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    end = time.monotonic() + timeout
    try:
        while not ready():
            if proc.poll() is not None:
                out, err = proc.communicate()
                pytest.fail(f"ended (rc {proc.returncode}) before the kill point: {err[-1500:]}")
            if time.monotonic() > end:
                pytest.fail("never reached the kill point")
            time.sleep(0.002)
        proc.send_signal(sig)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode


def _files(root: Path, skip: tuple[str, ...] = ()) -> dict[str, bytes]:
    """Every file under `root` (relative path -> bytes), but those whose name is in `skip`."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name not in skip}


# ------------------------------------------------------------------------------------------ distill
DISTILL = ["--blocks", "1", "--frame-size", "32", "--seq-len", "8", "--batch-size", "3", "--lr", "5e-3",
           "--epochs", "5", "--clips-per-epoch", "18", "--lr-schedule", "cosine", "--seed", "3",
           "--accelerator", "cpu", "--patience", "50"]


@pytest.fixture(scope="module")
def distill_inputs(tmp_path_factory) -> tuple[Path, Path, Path]:
    """Tiny clips with soft targets, and one uninterrupted reference run of the settings above."""
    root = tmp_path_factory.mktemp("distill_faults")
    data, targets = make_dataset(root, ["TRAIN"] * 6 + ["VAL"] * 2)
    ref = root / "reference"
    assert main(["distill", "--data", str(data), "--targets", str(targets), "--out", str(ref), *DISTILL]) == 0
    return data, targets, ref


def _last_epoch(run: Path) -> int | None:
    """The epoch of checkpoints/last.ckpt, or None while there is none."""
    path = run / "checkpoints" / "last.ckpt"
    try:
        return int(torch.load(path, map_location="cpu", weights_only=True)["epoch"])
    except (OSError, RuntimeError, EOFError, KeyError):
        return None


@pytest.mark.slow  # 21-24 s each on 2 shared cores (measured 13:15)
@pytest.mark.parametrize("sig,workers", [(signal.SIGKILL, "1"), (signal.SIGINT, "0")],
                         ids=["SIGKILL-one-loader-worker", "SIGINT"])
def test_distill_killed_then_resumed_equals_an_uninterrupted_run(distill_inputs, tmp_path, sig, workers, monkeypatch):
    """The reference ran without loader workers: the windows must not depend on them either."""
    from safetensors.torch import load_file

    from echodfkd.distill.module import DistillModule
    from echodfkd.models import Student

    data, targets, ref = distill_inputs
    run = tmp_path / "run"
    args = ["distill", "--data", data, "--targets", targets, "--out", run, *DISTILL, "--workers", workers]
    rc = _kill_when(_cli(*args), lambda: (run / "checkpoints" / "last.ckpt").is_file(), sig)
    assert rc == (-signal.SIGKILL if sig == signal.SIGKILL else 130)
    assert not (run / "model.safetensors").exists()  # killed while training
    done = _last_epoch(run)
    assert done is not None and done < 4

    started: list[int] = []  # the epochs the resumed run trains: the rest, not all again from scratch
    monkeypatch.setattr(DistillModule, "on_train_epoch_start", lambda self: started.append(self.current_epoch),
                        raising=False)
    assert main([*map(str, args), "--resume"]) == 0
    assert started == list(range(done + 1, 5))
    assert not _temp_files(run)
    got, want = (json.loads((r / "config.json").read_text()) for r in (run, ref))
    assert got["training"]["epochs_trained"] == want["training"]["epochs_trained"] == 5
    torch.testing.assert_close(got["training"]["best_val_loss"], want["training"]["best_val_loss"])
    assert got["thresholds"] == pytest.approx(want["thresholds"])
    a, b = load_file(run / "model.safetensors"), load_file(ref / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key])
    Student.from_pretrained(run)


@pytest.mark.parametrize("early_stop", [False, True], ids=["all-epochs", "stopped-early"])
def test_distill_interrupted_after_training_resumes_to_the_same_model(distill_inputs, tmp_path, monkeypatch,
                                                                     early_stop):
    """Ctrl-C during the export/calibration: the resumed run trains no further and exports the same model."""
    import echodfkd.distill.calibrate as calibrate
    from echodfkd.distill.train import distill

    data, targets, _ = distill_inputs
    # lr ~ 0 makes val loss stall, so patience 1 stops the run early; the resume must not train on.
    kw = dict(blocks=1, frame_size=32, seq_len=8, batch_size=3, epochs=5, augment=0.5,
              **(dict(lr=1e-12, patience=1) if early_stop else {}))
    ref = distill(data, targets, tmp_path / "ref", **kw)
    real = calibrate.calibrate

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(calibrate, "calibrate", interrupted)
    with pytest.raises(KeyboardInterrupt):
        distill(data, targets, tmp_path / "run", **kw)
    monkeypatch.setattr(calibrate, "calibrate", real)
    run = distill(data, targets, tmp_path / "run", resume=True, **kw)
    got, want = (json.loads((r / "config.json").read_text())["training"] for r in (run, ref))
    assert got["stopped_early"] == want["stopped_early"] == early_stop
    assert got["epochs_trained"] == want["epochs_trained"] and (want["epochs_trained"] < 5) == early_stop
    torch.testing.assert_close(got["best_val_loss"], want["best_val_loss"])


def test_distill_checkpoint_written_atomically(distill_inputs, tmp_path, monkeypatch):
    """A failure while a checkpoint is written keeps the previous last.ckpt whole."""
    import lightning.pytorch as pl

    from echodfkd.distill.train import distill

    data, targets, _ = distill_inputs
    run = tmp_path / "run"
    real_save = pl.Trainer.save_checkpoint

    def save(self, filepath, *a, **k):
        if self.current_epoch == 1 and Path(filepath).name.startswith(".last."):
            Path(filepath).write_bytes(b"half")
            raise KeyboardInterrupt
        return real_save(self, filepath, *a, **k)

    monkeypatch.setattr(pl.Trainer, "save_checkpoint", save)
    kw = dict(blocks=1, frame_size=32, seq_len=8, batch_size=3, epochs=3, augment=0)
    with pytest.raises(KeyboardInterrupt):
        distill(data, targets, run, **kw)
    assert _last_epoch(run) == 0  # the epoch-0 checkpoint, untouched
    monkeypatch.setattr(pl.Trainer, "save_checkpoint", real_save)
    with output_lock(run):  # taking the folder removes what the failed write left
        assert not _temp_files(run)
    distill(data, targets, run, resume=True, **kw)
    assert json.loads((run / "config.json").read_text())["training"]["epochs_trained"] == 3


# ------------------------------------------------------------------------------------------ phantom, check
@pytest.fixture(scope="module")
def phantom_ref(tmp_path_factory) -> Path:
    return phantom_folder(tmp_path_factory)


def test_phantom_killed_then_rerun_equals_an_uninterrupted_run(phantom_ref, tmp_path):
    out = tmp_path / "ph"
    records = out / "GroundTruth"  # PH_*.json: finished clips' records (a kill can leave .PH_*.tmp.json)
    rc = _kill_when(_cli("phantom", "--out", out, *PHANTOM), lambda: len(list(records.glob("PH_*.json"))) >= 3)
    assert rc == -signal.SIGKILL
    assert not (out / "FileList.csv").exists()  # killed before the end
    finished = {p: p.stat().st_ino for p in records.glob("PH_*.json")}
    assert len(finished) >= 3
    assert main(["phantom", "--out", str(out), *PHANTOM]) == 0
    assert not _temp_files(out)
    assert _files(out) == _files(phantom_ref)
    assert {p: p.stat().st_ino for p in finished} == finished  # finished clips were kept, not made again


def test_check_killed_then_rerun_equals_an_uninterrupted_run(phantom_ref, tmp_path, monkeypatch):
    ref_csv, csv = tmp_path / "ref.csv", tmp_path / "out" / "problems.csv"
    args = [phantom_ref, "--workers", "1", "--details"]
    assert main(["check", *map(str, args), "--csv", str(ref_csv)]) == 0
    journal = Path(str(csv) + ".progress.jsonl")

    def journalled() -> bool:  # two clips done, one of them with a problem (so the resumed rows matter)
        try:
            entries = [json.loads(line) for line in journal.read_text().splitlines(keepends=True)
                       if line.endswith("\n")]
        except (OSError, ValueError):
            return False
        return len(entries) >= 2 and any(e["problems"] for e in entries)

    assert _kill_when(_cli("check", *args, "--csv", csv), journalled) == -signal.SIGKILL
    assert journal.is_file() and not csv.exists()
    done = journal.read_text().count("\n")
    assert 2 <= done < 14
    from echodfkd.data import check as check_module

    inspected, inspect = [], check_module._inspect
    monkeypatch.setattr(check_module, "_inspect", lambda job, config: inspected.append(job) or inspect(job, config))
    assert main(["check", *map(str, args), "--csv", str(csv)]) == 0
    assert len(inspected) == 14 - done  # the journaled clips are not decoded again
    assert csv.read_bytes() == ref_csv.read_bytes()
    assert not journal.exists() and not _temp_files(csv.parent)


# ------------------------------------------------------------------------------------------ reproduce
@pytest.fixture(scope="module")
def reproduce_args(tmp_path_factory) -> tuple[list[str], Path]:
    """Phantom stand-ins for EchoNet-Dynamic and -Synthetic, a random teacher; arguments and a reference run."""
    import pandas as pd

    from echodfkd.data.phantom import generate_phantom
    from echodfkd.teacher.model import build_segmenter, save_echonet_checkpoint

    root = tmp_path_factory.mktemp("reproduce_faults")
    folders = {}
    for style, seed, splits in (("dynamic", 1, ["TEST"] * 3 + ["TRAIN"]), ("synthetic", 2, ["TRAIN"] * 3 + ["VAL"])):
        folders[style] = generate_phantom(root / style, 4, style=style, seed=seed, size=64, frames=32, workers=1,
                                          corrupt=0.25 if style == "dynamic" else 0.0)
        table = pd.read_csv(folders[style] / "FileList.csv")
        table["Split"] = splits
        table.to_csv(folders[style] / "FileList.csv", index=False)
    arch = "lraspp_mobilenet_v3_large"
    torch.manual_seed(0)
    teacher = save_echonet_checkpoint(build_segmenter(arch), root / "teacher.pt")
    args = ["reproduce", "--dynamic", str(folders["dynamic"]), "--synthetic", str(folders["synthetic"]),
            "--teacher", str(teacher), "--teacher-arch", arch, "--grid", "1x1", "--epochs", "4", "--frame-size", "32",
            "--batch-size", "2", "--bootstrap", "50", "--overlays", "0", "--device", "cpu", "--workers", "1"]
    assert main([*args, "--out", str(root / "reference")]) == 0
    return args, root / "reference"


def _reproduce_outputs(out: Path) -> dict[str, object]:
    """What a reproduce run produced: tables, student weights and config figures, every target and prediction."""
    from safetensors.torch import load_file

    metrics = json.loads((out / "metrics.json").read_text())
    run = out / "runs" / "b1_l1"
    cfg = json.loads((run / "config.json").read_text())
    arrays = {f"{d.name}/{k}": v for d in (out / "targets", out / "teacher_test", out / "predictions" / "b1_l1")
              for k, v in npz_arrays(d).items()}
    return {"tables": (metrics["table1"], metrics["table2"]), "weights": load_file(run / "model.safetensors"),
            "training": {k: cfg["training"][k] for k in ("epochs_trained", "best_val_loss")},
            "thresholds": cfg["thresholds"], "arrays": arrays}


@pytest.mark.slow  # 12-18 s each (+5 s setup) on 2 shared cores (measured 13:21)
@pytest.mark.parametrize("point", ["labelling", "distilling"])
def test_reproduce_killed_then_rerun_equals_an_uninterrupted_run(reproduce_args, tmp_path, point):
    args, ref = reproduce_args
    out = tmp_path / "out"
    ready = {"labelling": lambda: any((out / "targets").glob("*.npz")),
             "distilling": lambda: (out / "runs" / "b1_l1" / "checkpoints" / "last.ckpt").is_file()}[point]
    assert _kill_when(_cli(*args, "--out", out), ready) == -signal.SIGKILL
    assert not (out / "metrics.json").exists()
    assert main([*args, "--out", str(out)]) == 0
    assert not _temp_files(out)
    got, want = _reproduce_outputs(out), _reproduce_outputs(ref)
    torch.testing.assert_close(got["weights"], want["weights"])
    assert got["training"] == pytest.approx(want["training"]) and got["thresholds"] == want["thresholds"]
    assert got["tables"] == want["tables"]
    assert got["arrays"].keys() == want["arrays"].keys()
    for key, arrays in want["arrays"].items():
        for name, value in arrays.items():
            np.testing.assert_array_equal(got["arrays"][key][name], value)


# ------------------------------------------------------------------------------------------ full disk
@pytest.fixture
def small_disk(tmp_path):
    """A tmpfs mounted at tmp_path/disk, resized with the returned function; skips without mount rights."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")

    def resize(kib: int) -> None:
        subprocess.run(["mount", "-o", f"remount,size={kib}k", str(disk)], check=True, capture_output=True)

    yield disk, resize
    subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def _kib(root: Path) -> int:
    """KiB the files under `root` take on a tmpfs (whole 4 KiB pages)."""
    return sum(-(-p.stat().st_size // 4096) * 4 for p in root.rglob("*") if p.is_file())


def _full_then_free(run: Callable[[], int], out: Path, ref: Path, resize: Callable[[int], None],
                    capsys) -> None:
    """Run on a disk half the output's size: one line, nothing half-written; then grow it and finish."""
    resize(max(16, _kib(ref) // 2))
    capsys.readouterr()
    assert run() == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no space left on device" in err[0] and str(out) in err[0], err
    assert not _temp_files(out)
    resize(4 * _kib(ref) + 1024)
    assert run() == 0


def test_full_disk_phantom(small_disk, phantom_ref, capsys):
    disk, resize = small_disk
    out = disk / "ph"
    _full_then_free(lambda: main(["phantom", "--out", str(out), *PHANTOM]), out, phantom_ref, resize, capsys)
    assert _files(out) == _files(phantom_ref)


def test_full_disk_distill(small_disk, distill_inputs, capsys):
    from safetensors.torch import load_file

    disk, resize = small_disk
    data, targets, ref = distill_inputs
    out = disk / "run"
    args = ["distill", "--data", str(data), "--targets", str(targets), "--out", str(out), *DISTILL]
    # as a user would: a fresh run first, then --resume (refused where there is no run yet)
    _full_then_free(lambda: main(args + ["--resume"] * (out / "config.json").is_file()), out, ref, resize, capsys)
    got, want = (json.loads((r / "config.json").read_text())["training"] for r in (out, ref))
    assert got["epochs_trained"] == want["epochs_trained"]
    torch.testing.assert_close(got["best_val_loss"], want["best_val_loss"])
    a, b = load_file(out / "model.safetensors"), load_file(ref / "model.safetensors")
    for key in b:
        torch.testing.assert_close(a[key], b[key])


@pytest.fixture(scope="module")
def teacher_ckpt(tmp_path_factory) -> Path:
    from echodfkd.teacher.model import Teacher, build_segmenter, save_echonet_checkpoint

    torch.manual_seed(0)
    arch = "lraspp_mobilenet_v3_large"
    return save_echonet_checkpoint(Teacher(build_segmenter(arch), arch=arch).eval(),
                                   tmp_path_factory.mktemp("teacher") / "teacher.pt")


def test_full_disk_label(small_disk, phantom_ref, teacher_ckpt, tmp_path, capsys):
    disk, resize = small_disk
    args = [str(phantom_ref), "--teacher", str(teacher_ckpt), "--batch-size", "16", "--split", "VAL,TEST"]
    assert main(["label", *args, "--out", str(tmp_path / "ref")]) == 0
    out = disk / "targets"
    _full_then_free(lambda: main(["label", *args, "--out", str(out)]), out, tmp_path / "ref", resize, capsys)
    got, want = npz_arrays(out), npz_arrays(tmp_path / "ref")
    assert got.keys() == want.keys() and len(got) == 4
    for name in want:
        for key in want[name]:
            np.testing.assert_array_equal(got[name][key], want[name][key])


def _student(run: Path) -> Path:
    from echodfkd.models import Student

    torch.manual_seed(0)
    Student(blocks=2).eval().save_pretrained(run, extra_config={"thresholds": {"dice": 0.4, "afd": 0.3},
                                                                "infer_size": 96})
    return run


def test_full_disk_predict(small_disk, phantom_ref, tmp_path, capsys):
    disk, resize = small_disk
    model = _student(tmp_path / "model")
    args = [str(phantom_ref), "--student", str(model), "--split", "VAL,TEST"]
    ref = tmp_path / "ref"
    assert main(["predict", *args, "--out", str(ref)]) == 0
    out = disk / "pred"
    _full_then_free(lambda: main(["predict", *args, "--out", str(out)]), out, ref, resize, capsys)
    assert npz_arrays(out).keys() == npz_arrays(ref).keys()
    for name, arrays in npz_arrays(ref).items():
        for key, value in arrays.items():
            np.testing.assert_array_equal(npz_arrays(out)[name][key], value)


def test_enospc_from_any_writer_is_one_line_and_leaves_no_temp_file(phantom_ref, teacher_ckpt, tmp_path,
                                                                    monkeypatch, capsys):
    """Where no tmpfs can be mounted: the third target write fails as a full disk would."""
    import echodfkd.io.atomic as atomic

    real, calls = atomic.np.savez_compressed, []

    def savez(fh, **arrays):
        calls.append(1)
        if len(calls) == 3:
            fh.write(b"partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fh, **arrays)

    monkeypatch.setattr(atomic.np, "savez_compressed", savez)
    out = tmp_path / "targets"
    args = ["label", str(phantom_ref), "--teacher", str(teacher_ckpt), "--out", str(out), "--batch-size", "16",
            "--split", "VAL,TEST"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no space left on device" in err[0] and str(out) in err[0]
    kept = sorted(out.glob("*.npz"))
    assert not _temp_files(out) and 2 <= len(kept) < 4
    for path in kept:  # the writes before the failure (and any already in flight) are whole
        with np.load(path) as z:
            assert z["masks"].ndim == 3
    assert main(args) == 0 and len(list(out.glob("*.npz"))) == 4
