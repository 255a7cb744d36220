"""Faults: runs killed (SIGKILL, SIGINT) and resumed.

The kill tests start the real CLI in a subprocess, kill it once its first results are on disk, resume it,
and compare with an uninterrupted run; each fails when resuming is broken (see docs/faults.md).
The full-disk tests are in test_faults_disk.py.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch

from fault_support import DISTILL, ENV, PHANTOM, distill_reference, files_under, phantom_folder
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


# ------------------------------------------------------------------------------------------ distill
@pytest.fixture(scope="module")
def distill_inputs(tmp_path_factory) -> tuple[Path, Path, Path]:
    return distill_reference(tmp_path_factory)


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
    assert files_under(out) == files_under(phantom_ref)
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
