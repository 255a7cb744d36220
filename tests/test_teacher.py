"""Teachers: EchoNet checkpoint loading (theirs and ours), refusals with one clear line, teacher training."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from echodfkd.cli import main
from echodfkd.errors import ModelError
from echodfkd.teacher.model import (ECHONET_MEAN, ECHONET_STD, Teacher, build_segmenter, load_teacher,
                                     save_echonet_checkpoint, weights_hash)
from tiny_echonet import pulsing_folder

LIGHT = "lraspp_mobilenet_v3_large"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _frames(n: int = 2, size: int = 64, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size), dtype=np.uint8)


@pytest.fixture(scope="module")
def light_model() -> nn.Module:
    torch.manual_seed(1)
    return build_segmenter(LIGHT).eval()


def test_echonet_deeplabv3_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    model = build_segmenter("deeplabv3_resnet50").eval()
    assert isinstance(model.classifier[-1], nn.Conv2d) and model.classifier[-1].out_channels == 1
    assert model.aux_classifier is None
    frames = _frames()
    with torch.inference_mode():
        before = Teacher(model).eval()(frames)
    # Exactly what EchoNet's training script saves: a DataParallel state dict inside a nested dict.
    wrapped = nn.DataParallel(model)
    checkpoint = {"epoch": 45, "state_dict": wrapped.state_dict(), "best_loss": 0.0123, "loss": 0.0150,
                  "opt_dict": {}, "scheduler_dict": {"step_size": 1}}
    assert all(k.startswith("module.") for k in checkpoint["state_dict"])
    path = tmp_path / "deeplabv3_resnet50_random.pt"
    torch.save(checkpoint, path)

    teacher = load_teacher(path)
    assert teacher.arch == "deeplabv3_resnet50"
    assert teacher.mean == ECHONET_MEAN and teacher.std == ECHONET_STD
    with torch.inference_mode():
        after = teacher(frames)
    assert after.shape == (2, 64, 64)
    torch.testing.assert_close(after, before, rtol=0, atol=0)
    assert weights_hash(teacher) == weights_hash(model)


def test_our_checkpoint_is_echonet_format_and_records_arch(tmp_path, light_model):
    teacher = Teacher(light_model, arch=LIGHT, mean=40.0, std=[30.0, 31.0, 32.0]).eval()
    path = save_echonet_checkpoint(teacher, tmp_path / "t.pt", epoch=3, best_loss=0.1, loss=0.2)
    raw = torch.load(path, weights_only=True)
    assert {"epoch", "state_dict", "best_loss", "loss", "opt_dict", "scheduler_dict"} <= set(raw)
    assert raw["epoch"] == 3 and raw["arch"] == LIGHT
    assert all(k.startswith("module.") for k in raw["state_dict"])
    loaded = load_teacher(path)   # arch and normalisation come from the checkpoint
    assert loaded.arch == LIGHT and loaded.mean == (40.0, 40.0, 40.0) and loaded.std == (30.0, 31.0, 32.0)
    frames = _frames(size=32)
    with torch.inference_mode():
        torch.testing.assert_close(loaded(frames), teacher(frames), rtol=0, atol=0)
    assert load_teacher(path, mean=0.0, std=1.0).mean == (0.0, 0.0, 0.0)   # overridable


def test_plain_state_dict_loads(tmp_path, light_model):
    path = tmp_path / "plain.pt"
    torch.save(light_model.state_dict(), path)
    teacher = load_teacher(path, arch=LIGHT)
    assert weights_hash(teacher) == weights_hash(light_model)
    with torch.inference_mode():
        out = teacher(torch.from_numpy(_frames(3, 32)))
    assert out.shape == (3, 32, 32) and out.dtype == torch.float32


class _Payload:
    """Unpickling this would run code: it must never happen."""

    def __init__(self, sentinel: Path):
        self.sentinel = sentinel

    def __reduce__(self):
        return (exec, (f"open({str(self.sentinel)!r}, 'w').write('pwned')",))


class _Custom:
    def __init__(self):
        self.weights = torch.zeros(3)


def test_pickle_payload_is_refused_and_not_run(tmp_path):
    sentinel = tmp_path / "ran.txt"
    for i, save in enumerate((torch.save, lambda obj, p: p.write_bytes(pickle.dumps(obj)))):
        path = tmp_path / f"evil{i}.pt"
        save({"state_dict": _Payload(sentinel)}, path)
        with pytest.raises(ModelError) as err:
            load_teacher(path)
        assert str(path) in str(err.value) and "\n" not in str(err.value)
        assert not sentinel.exists()
    path = tmp_path / "custom.pt"
    torch.save(_Custom(), path)
    with pytest.raises(ModelError, match="pickled Python objects"):
        load_teacher(path)


def test_wrong_arch_is_refused_with_a_hint(tmp_path, light_model):
    path = tmp_path / "light.pt"
    torch.save({"state_dict": light_model.state_dict()}, path)   # no arch recorded
    with pytest.raises(ModelError) as err:
        load_teacher(path, arch="deeplabv3_mobilenet_v3_large")
    msg = str(err.value)
    assert str(path) in msg and "deeplabv3_mobilenet_v3_large" in msg and f"--teacher-arch {LIGHT}" in msg
    assert "\n" not in msg
    ours = save_echonet_checkpoint(Teacher(light_model, arch=LIGHT), tmp_path / "ours.pt")
    with pytest.raises(ModelError, match="records arch lraspp"):
        load_teacher(ours, arch="fcn_resnet50")
    # A 2-class head of the same family is a shape mismatch, not a crash.
    bad = dict(light_model.state_dict())
    bad["classifier.low_classifier.weight"] = torch.zeros(2, 40, 1, 1)
    torch.save(bad, tmp_path / "twoclass.pt")
    with pytest.raises(ModelError, match="shape mismatch"):
        load_teacher(tmp_path / "twoclass.pt", arch=LIGHT)


@pytest.mark.parametrize("content, reason", [
    (None, "not found"),
    (b"", "empty file"),
    (b"hello, I am a text file\n", "not a PyTorch checkpoint"),
    ("tensor", "not a state dict"),
    ("list", "not a state dict"),
    ("nontensor", "no weight tensors"),
])
def test_bad_files_are_refused(tmp_path, content, reason):
    path = tmp_path / "teacher.pt"
    if content == "tensor":
        torch.save(torch.zeros(3), path)
    elif content == "list":
        torch.save([torch.zeros(3)], path)
    elif content == "nontensor":
        torch.save({"epoch": 3, "lr": 0.1}, path)
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(ModelError, match=reason) as err:
        load_teacher(path)
    assert str(path) in str(err.value)


def test_weights_hash_tracks_weights(light_model):
    a = weights_hash(light_model)
    assert len(a) == 64 and a == weights_hash(Teacher(light_model))
    other = build_segmenter(LIGHT)
    other.load_state_dict(light_model.state_dict())
    assert weights_hash(other) == a
    with torch.no_grad():
        next(other.parameters())[0].flatten()[0] += 1e-3
    assert weights_hash(other) != a


def test_unknown_arch_and_normalisation_are_refused():
    with pytest.raises(ModelError, match="unknown teacher architecture"):
        build_segmenter("unet")
    with pytest.raises(ModelError, match="std must be positive"):
        Teacher(nn.Identity(), std=0.0)


def test_train_teacher_and_cli(tmp_path, capsys):
    from echodfkd.teacher.train import load_traced_frames, train_teacher
    from echodfkd.data import open_dataset

    data = pulsing_folder(tmp_path / "data", {"TRAIN": 5, "VAL": 1}, size=32, frames=8, broken=("clip_train_4",))
    traced = load_traced_frames(open_dataset(data), "TRAIN")
    assert traced.frames.shape == (8, 32, 32) and traced.masks.dtype == bool and traced.masks.any()
    assert [n for n, _ in traced.skipped] == ["clip_train_4"] and len(traced.origin) == 8
    out = tmp_path / "teacher.pt"
    result = train_teacher(data, LIGHT, out, epochs=40, batch_size=4, augment=0.5)
    assert len(result.history) == 40
    # It learns: eval-mode VAL Dice (BatchNorm running statistics) well above chance on the ellipses.
    assert result.best_val_dice > 0.6
    assert result.train_frames == 8 and result.val_frames == 2 and result.validated_on == "VAL"
    assert [n for n, _ in result.skipped] == ["clip_train_4"]
    best = result.history[result.best_epoch - 1]["val_dice"]
    assert result.best_val_dice == best == max(h["val_dice"] for h in result.history)
    raw = torch.load(out, weights_only=True)
    assert raw["complete"] is True and raw["epoch"] == result.best_epoch and raw["arch"] == LIGHT
    teacher = load_teacher(out)
    assert teacher.arch == LIGHT and teacher.mean[0] == pytest.approx(traced.frames.mean(), rel=1e-6)

    assert main(["teacher", "info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["arch"] == LIGHT and info["weights_hash"] == weights_hash(teacher) and info["params"] > 1e6

    out2 = tmp_path / "cli"
    assert main(["teacher", "train", str(data), "--teacher-arch", LIGHT, "--out", str(out2), "--epochs", "1",
                 "--batch-size", "4", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["best_epoch"] == 1 and (out2 / "teacher.pt").is_file()
    # --max-time (whole seconds) stops after the epoch that crosses the budget, long before 500 epochs.
    out3 = tmp_path / "capped"
    assert main(["teacher", "train", str(data), "--teacher-arch", LIGHT, "--out", str(out3), "--epochs", "500",
                 "--batch-size", "4", "--max-time", "1", "--json"]) == 0
    capped = json.loads(capsys.readouterr().out)
    assert 1 <= len(capped["history"]) < 500 and capped["seconds"] < 30 and (out3 / "teacher.pt").is_file()


def test_cli_bad_inputs(tmp_path, capsys):
    assert main(["teacher", "info", str(tmp_path / "missing.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert "missing.pt" in err and "not found" in err and len(err.splitlines()) == 1
    synthetic = tmp_path / "syn"
    (synthetic / "Videos").mkdir(parents=True)
    (synthetic / "FileList.csv").write_text("FileName,Split\na,TRAIN\n")
    assert main(["teacher", "train", str(synthetic), "--out", str(tmp_path / "t"), "--epochs", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "tracings" in err and len(err.splitlines()) == 1
