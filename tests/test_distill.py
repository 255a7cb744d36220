"""Distillation: clip windows, training (loss falls, resume, DDP), calibrated thresholds, bad inputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from distill_data import labelled_phantom, make_dataset
from echodfkd.cli import main
from echodfkd.data import open_dataset
from echodfkd.data.clips import ClipStore, FixedWindows, TargetsFolder, TrainWindows, check_targets
from echodfkd.distill.calibrate import _plateau_centre, area_curves, dice_curve, level_to_threshold, phase_errors
from echodfkd.errors import DatasetError, ModelError
from echodfkd.io.atomic import save_json, save_npz
from echodfkd.models import Student

# Small and quick on 2 busy cores: (2,1) student trained at 32x32 on 64x64 clips.
SMALL = dict(blocks=2, layers=1, frame_size=32, seq_len=8, batch_size=3, lr=5e-3)
SPLITS = ["TRAIN"] * 6 + ["VAL"] * 2


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def epochs_logged(run: Path) -> list[int]:
    """Epochs with a logged val_loss, over every (re)start's CSV log."""
    epochs = []
    for path in sorted((run / "logs" / "csv").glob("version_*/metrics.csv")):
        table = pd.read_csv(path)
        epochs += table.dropna(subset=["val_loss"])["epoch"].astype(int).tolist()
    return epochs


# ------------------------------------------------------------------------------------------ data
def test_windows_pad_short_clips_resize_and_stack_channels(tmp_path):
    data, targets = make_dataset(tmp_path, ["TRAIN", "TRAIN", "VAL"], frames=[30, 5, 20], rv=True)
    ds, tf = open_dataset(data), TargetsFolder(targets)
    names = ds.names("TRAIN")
    check = check_targets(ds, names, tf, "TRAIN")
    assert check.channels == ("lv", "rv") and check.frames == {"clip00": 30, "clip01": 5}
    assert check.sizes == {"clip00": (64, 64), "clip01": (64, 64)}
    store = ClipStore(ds, names, tf, check, frame_size=32)
    assert store.cached
    frames, soft = store.get(1)
    assert frames.shape == (5, 32, 32) and soft.shape == (5, 2, 32, 32) and soft.dtype == np.uint8
    assert 0 < soft.max() <= 255 and len(np.unique(soft)) > 2  # resized bilinearly: still soft

    x, y = TrainWindows(store, seq_len=8)[1]  # 5-frame clip in an 8-frame window: padded at the start
    assert x.shape == (8, 1, 32, 32) and y.shape == (8, 2, 32, 32) and x.dtype == torch.uint8
    for k in range(4):
        assert torch.equal(x[k, 0], torch.from_numpy(frames[0])) and torch.equal(y[k], torch.from_numpy(soft[0]))
    assert torch.equal(x[3:, 0], torch.from_numpy(frames))

    full_frames, _ = store.get(0)
    starts = set()
    for _ in range(20):
        x, _ = TrainWindows(store, seq_len=8)[0]
        matches = [s for s in range(23) if torch.equal(x[:, 0], torch.from_numpy(full_frames[s:s + 8]))]
        assert len(matches) >= 1
        starts.add(matches[0])
    assert len(starts) > 1  # a random window each time

    fixed = FixedWindows(store, seq_len=8)
    assert len(fixed) == 2 and fixed.index[0] == (0, 11)  # centred in 30 frames
    uncached = ClipStore(ds, names, tf, check, frame_size=32, cache_bytes=0)  # too big to cache: decode per item
    assert not uncached.cached
    for a, b in zip(fixed[0], FixedWindows(uncached, seq_len=8)[0]):
        assert torch.equal(a, b)
    assert [s for i, s in FixedWindows(store, seq_len=8, per_clip=3).index if i == 0] == [0, 11, 22]


# ------------------------------------------------------------------------------------------ calibration
def test_calibration_finds_the_thresholds_that_match_the_teacher():
    t, size = 40, 32
    yy, xx = np.mgrid[:size, :size]
    radius = 8 + 4 * np.sin(2 * np.pi * np.arange(t + 3) / 14)
    disc = np.stack([((yy - 16) ** 2 + (xx - 16) ** 2) < r ** 2 for r in radius])
    teacher = disc[3:].astype(np.uint8) * 255
    # Levels 61..200 reproduce the teacher exactly; levels <= 60 add a disc 3 frames late (phase-shifted).
    soft = np.maximum(disc[3:] * 200, disc[:-3] * 60).astype(np.uint8)
    dice = dice_curve(soft, teacher)
    assert dice[61:201].min() == pytest.approx(1.0) and dice[30] < 1 and dice[230] == 0
    k = _plateau_centre(dice, "max")
    assert 61 <= k <= 200 and k == (61 + 200) // 2
    assert soft[teacher > 0].min() >= 255 * level_to_threshold(k)  # the threshold keeps every teacher pixel

    areas = area_curves(soft)
    assert areas.shape == (t, 256) and (areas[:, 100] == disc[3:].sum((1, 2))).all()
    err, beats = phase_errors(areas, (teacher > 0).sum((1, 2)).astype(float))
    assert beats >= 4 and err[61:201].max() == 0 and err[10] > 0
    assert err[255] > 0  # an empty mask is a miss, never a perfect score
    assert level_to_threshold(128) == pytest.approx(0.5)


# ------------------------------------------------------------------------------------------ training
def test_loss_falls_and_thresholds_land_in_config(tmp_path):
    from echodfkd.distill.train import distill

    data, targets = labelled_phantom(tmp_path, SPLITS)
    run = distill(data, targets, tmp_path / "run", epochs=6, **SMALL)
    log = pd.concat(pd.read_csv(p) for p in (run / "logs" / "csv").glob("version_*/metrics.csv"))
    train = log.dropna(subset=["train_loss"]).sort_values("epoch")["train_loss"].to_numpy()
    val = log.dropna(subset=["val_loss"]).sort_values("epoch")["val_loss"].to_numpy()
    assert len(train) == 6 and train[-1] < 0.85 * train[0] and val.min() < val[0]

    cfg = json.loads((run / "config.json").read_text())
    assert cfg["status"] == "done" and cfg["blocks"] == 2 and cfg["out_channels"] == 1
    assert set(cfg["thresholds"]) == {"dice", "afd"} and all(0 < v < 1 for v in cfg["thresholds"].values())
    assert cfg["training"]["lr"] == 5e-3 and cfg["training"]["seq_len"] == 8 and cfg["training"]["epochs_trained"] == 6
    assert cfg["training"]["best_val_loss"] == pytest.approx(val.min(), rel=1e-4)
    assert cfg["data"]["targets_dir"] == str(targets.resolve()) and cfg["data"]["channels"] == ["lv"]
    # 2 VAL clips, each also calibrated as one augmented copy (augmentation is on by default)
    assert cfg["calibration"]["clips"] == 4 and 0 <= cfg["calibration"]["val_dice"] <= 1
    # No --infer-size: the student is calibrated, and told to run, at its training size (--frame-size 32),
    # not at the clips' own 64 px where it was never trained.
    assert cfg["training"]["frame_size"] == 32
    assert cfg["calibration"]["sizes"] == [[32, 32]] and cfg["infer_size"] == 32
    assert (run / "checkpoints" / "best.ckpt").is_file() and (run / "checkpoints" / "last.ckpt").is_file()
    assert list((run / "logs" / "tensorboard").glob("version_0/events.*"))
    student = Student.from_pretrained(run)
    assert student.config["thresholds"] == cfg["thresholds"]
    with torch.no_grad():
        assert student(torch.zeros(1, 3, 1, 64, 64)).shape == (1, 3, 1, 64, 64)

    with pytest.raises(ModelError, match="already holds a finished run"):
        distill(data, targets, run, epochs=6, **SMALL)
    assert distill(data, targets, run, epochs=6, resume=True, **SMALL) == run  # finished: nothing to do


def test_interrupted_run_resumes_to_the_same_epoch_count(tmp_path):
    import lightning.pytorch as pl

    from echodfkd.distill.train import distill

    class CtrlC(pl.Callback):
        def on_train_epoch_end(self, trainer, module):
            if trainer.current_epoch == 1:
                raise KeyboardInterrupt  # what Ctrl-C raises in the training loop

    data, targets = make_dataset(tmp_path, SPLITS[2:])
    run = tmp_path / "run"
    kw = dict(SMALL, blocks=1, epochs=3)
    with pytest.raises(KeyboardInterrupt):  # Lightning's graceful shutdown, reported as an interruption
        distill(data, targets, run, callbacks=[CtrlC()], **kw)
    assert (run / "checkpoints" / "last.ckpt").is_file() and not (run / "model.safetensors").exists()
    with pytest.raises(ModelError, match="--resume"):
        distill(data, targets, run, **kw)
    distill(data, targets, run, resume=True, **kw)
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["training"]["epochs_trained"] == 3
    assert sorted(set(epochs_logged(run))) == [0, 1, 2]
    Student.from_pretrained(run)
    (run / "model.safetensors").unlink()  # unfinished again: resuming below the epochs done is refused
    with pytest.raises(ModelError, match=r"last.ckpt: .*current_epoch=2.*max_epochs=1"):
        distill(data, targets, run, resume=True, **dict(kw, epochs=1))


def test_two_channel_student_from_lv_and_rv_targets(tmp_path):
    from echodfkd.distill.train import distill

    data, targets = make_dataset(tmp_path, SPLITS[3:], rv=True)
    run = distill(data, targets, tmp_path / "run", epochs=1, **dict(SMALL, blocks=1))
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["out_channels"] == 2 and cfg["data"]["channels"] == ["lv", "rv"]
    assert 0 < cfg["thresholds_rv"]["dice"] < 1 and "val_dice_rv" in cfg["calibration"]
    assert Student.from_pretrained(run)(torch.zeros(1, 2, 1, 64, 64)).shape[2] == 2


@pytest.mark.slow
def test_ddp_with_two_cpu_processes(tmp_path):
    data, targets = make_dataset(tmp_path, SPLITS[2:])
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "echodfkd", "distill", "--data", str(data), "--targets", str(targets),
           "--out", str(run), "--blocks", "1", "--epochs", "1", "--seq-len", "6", "--batch-size", "2",
           "--frame-size", "32", "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp"]
    env = dict(os.environ, ECHODFKD_QUIET="1", OMP_NUM_THREADS="1")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "GLOBAL_RANK: 1" in proc.stderr + proc.stdout  # really two processes
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["training"]["devices"] == 2 and cfg["training"]["strategy"] == "ddp" and "thresholds" in cfg
    assert Student.from_pretrained(run).num_parameters() == 5701


# ------------------------------------------------------------------------------------------ bad inputs
def _missing_targets(data: Path, targets: Path) -> str:
    for name in ("clip01", "clip02"):
        (targets / f"{name}.npz").unlink()
    return "no target for 2 of 4 TRAIN clips (clip01.npz, clip02.npz)"


def _frame_count(data: Path, targets: Path) -> str:
    with np.load(targets / "clip03.npz") as z:
        save_npz(targets / "clip03.npz", masks=z["masks"][:-2])
    return "clip03.npz: 18 target frames but"


def _target_size(data: Path, targets: Path) -> str:
    save_npz(targets / "clip00.npz", masks=np.zeros((20, 32, 32), np.uint8))
    return "clip00.npz: targets are 32x32 but"


def _empty_split(data: Path, targets: Path) -> str:
    table = pd.read_csv(data / "FileList.csv")
    table["Split"] = "TRAIN"
    table.to_csv(data / "FileList.csv", index=False)
    return "FileList.csv: split VAL has no clips"


def _bad_meta(data: Path, targets: Path) -> str:
    (targets / "meta.json").write_text("{not json")
    return "meta.json: unreadable targets meta"


def _no_targets_folder(data: Path, targets: Path) -> str:
    for p in targets.iterdir():
        p.unlink()
    targets.rmdir()
    return "targets folder not found"


def _no_rv(data: Path, targets: Path) -> tuple[str, list[str]]:
    return "4 TRAIN target(s) lack an 'rv' array", ["--channels", "lv,rv"]


def _indivisible(data: Path, targets: Path) -> tuple[str, list[str]]:
    return "clip00.avi: 64x64 frames are not divisible by 128 for a 8-block student; pass --frame-size", \
        ["--blocks", "8"]


@pytest.mark.parametrize("damage", [_missing_targets, _frame_count, _target_size, _empty_split, _bad_meta,
                                    _no_targets_folder, _no_rv, _indivisible])
def test_bad_inputs_stop_with_one_line_before_training(tmp_path, capsys, damage):
    data, targets = make_dataset(tmp_path, ["TRAIN"] * 4 + ["VAL"] * 2, frames=20)
    expected = damage(data, targets)
    expected, extra = expected if isinstance(expected, tuple) else (expected, [])
    run = tmp_path / "run"
    rc = main(["distill", "--data", str(data), "--targets", str(targets), "--out", str(run), "--blocks", "1",
               "--epochs", "1", "--seq-len", "4", *extra])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert expected in err and "Traceback" not in err
    assert not (run / "checkpoints").exists()  # stopped before training


def test_resume_refuses_other_teacher_or_architecture(tmp_path):
    from echodfkd.distill.train import distill

    data, targets = make_dataset(tmp_path, ["TRAIN", "VAL"], frames=12)
    run = tmp_path / "run"
    started = dict(Student(1, 1).config, data={"targets_meta": {"teacher": "another", "teacher_sha256": "1" * 64}})
    save_json(run / "config.json", started)
    with pytest.raises(DatasetError, match="meta.json: targets come from another teacher"):
        distill(data, targets, run, resume=True, **dict(SMALL, blocks=1))
    with pytest.raises(ModelError, match="different architecture .*blocks=1->2"):
        distill(data, targets, run, resume=True, **SMALL)


def test_precision_default_follows_the_hardware(monkeypatch):
    import echodfkd.hardware as hw
    from echodfkd.distill.config import DistillConfig
    from echodfkd.distill.devices import lightning_precision as _precision

    monkeypatch.setattr(hw, "cpu_flags", lambda: frozenset({"avx2", "avx512f", "avx512_bf16"}))
    assert hw.cpu_has_native_bf16() and _precision(DistillConfig(), "cpu") == "bf16-mixed"
    monkeypatch.setattr(hw, "cpu_flags", lambda: frozenset({"avx2", "avx512f"}))
    assert not hw.cpu_has_native_bf16() and _precision(DistillConfig(), "cpu") == "32-true"
    assert _precision(DistillConfig(precision="fp32"), "cpu") == "32-true"  # an explicit choice wins
    assert _precision(DistillConfig(precision="bf16"), "cpu") == "bf16-mixed"
    with pytest.warns(DeprecationWarning, match="'32-true' is deprecated"):  # Lightning's spelling: one release
        assert DistillConfig(precision="32-true").precision == "fp32"
