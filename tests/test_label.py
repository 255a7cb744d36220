"""Teacher labelling: exact targets, resume after a crash, shards, the rv channel, meta.json checks, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import echodfkd.distill.label as label_mod
from echodfkd.cli import main
from echodfkd.data import open_dataset
from echodfkd.errors import DatasetError, EchoDFKDError
from echodfkd.distill.label import label_dataset, resolve_shard, shard_names
from echodfkd.launch import parse_shard
from echodfkd.teacher.model import Teacher, build_segmenter, save_echonet_checkpoint, weights_hash
from tiny_echonet import pulsing_folder
from tiny_models import npz_arrays

ARCH = "lraspp_mobilenet_v3_large"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return pulsing_folder(tmp_path_factory.mktemp("echo"), {"TRAIN": 5, "VAL": 2, "TEST": 1}, size=32, frames=9)


def _teacher(seed: int) -> Teacher:
    torch.manual_seed(seed)
    return Teacher(build_segmenter(ARCH), arch=ARCH).eval()


@pytest.fixture(scope="module")
def teacher() -> Teacher:
    return _teacher(0)


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        a[n].keys() == b[n].keys() and all(np.array_equal(a[n][k], b[n][k]) for k in a[n]) for n in a)


@pytest.fixture(scope="module")
def reference(data, teacher, tmp_path_factory) -> Path:
    """An uninterrupted run (batch 4, so batches straddle clip boundaries)."""
    out = tmp_path_factory.mktemp("ref")
    summary = label_dataset(data, teacher, out, batch_size=4)
    assert summary.labelled == 7 and summary.skipped == 0 and not summary.failed and summary.frames == 63
    return out


def test_targets_are_the_rounded_teacher_probabilities(data, teacher, reference):
    ds = open_dataset(data)
    files = npz_arrays(reference)
    assert sorted(files) == sorted(ds.names("TRAIN") + ds.names("VAL"))
    name = ds.names("VAL")[0]
    frames, _ = ds.video(name)
    with torch.inference_mode():
        expected = torch.round(torch.sigmoid(teacher(frames)) * 255).to(torch.uint8).numpy()
    masks = files[name]["masks"]
    assert masks.dtype == np.uint8 and masks.shape == frames.shape
    np.testing.assert_array_equal(masks, expected)
    meta = json.loads((reference / "meta.json").read_text())
    assert meta["teacher"]["arch"] == ARCH and meta["teacher"]["weights_hash"] == weights_hash(teacher)
    assert meta["teacher"]["mean"] == list(teacher.mean) and list(meta["channels"]) == ["masks"]


def test_run_killed_half_way_then_rerun_matches(data, teacher, reference, tmp_path, monkeypatch):
    out = tmp_path / "targets"
    real, calls = label_mod.save_npz, []

    def crash_on_third(path, **arrays):
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt   # as if the user pressed Ctrl-C while the third file was written
        return real(path, **arrays)

    monkeypatch.setattr(label_mod, "save_npz", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        label_dataset(data, teacher, out, batch_size=5)
    monkeypatch.setattr(label_mod, "save_npz", real)
    done = sorted(out.glob("*.npz"))
    assert 2 <= len(done) < 7 and not list(out.glob(".*tmp*"))   # nothing half-written left behind
    summary = label_dataset(data, teacher, out, batch_size=3)      # resume, other batch size
    assert summary.skipped == len(done) and summary.labelled == 7 - len(done)
    assert _same(npz_arrays(out), npz_arrays(reference))

    # An incremental run (max_clips) resumed the same way ends identical too.
    out2 = tmp_path / "incremental"
    assert label_dataset(data, teacher, out2, batch_size=64, max_clips=3).labelled == 3
    assert label_dataset(data, teacher, out2, batch_size=64).labelled == 4
    assert _same(npz_arrays(out2), npz_arrays(reference))


def test_shards_partition_the_clips(data, teacher, reference, tmp_path, monkeypatch):
    names = [f"c{i}" for i in range(11)]
    parts = [shard_names(reversed(names), (i, 3)) for i in range(3)]
    assert sorted(sum(parts, [])) == sorted(names) and not set(parts[0]) & set(parts[1])
    out = tmp_path / "sharded"
    seen = []
    for i in range(3):
        summary = label_dataset(data, teacher, out, shard=f"{i}/3", batch_size=4)
        seen.append(summary.labelled)
    assert sum(seen) == 7 and all(seen)
    assert _same(npz_arrays(out), npz_arrays(reference))
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "2")
    assert resolve_shard(None) == (2, 4) and resolve_shard("1/2") == (1, 2)
    for bad in ("3/2", "a/b", "1", "-1/2"):
        with pytest.raises(EchoDFKDError, match="shard"):
            parse_shard(bad)


def test_rv_channel_is_added_beside_masks(data, teacher, reference, tmp_path):
    out = tmp_path / "multi"
    label_dataset(data, teacher, out, splits="VAL", batch_size=8)
    rv_teacher = _teacher(1)
    summary = label_dataset(data, rv_teacher, out, splits="VAL", channel="rv", batch_size=8)
    assert summary.labelled == 2
    files = npz_arrays(out)
    for name, arrays in files.items():
        assert set(arrays) == {"masks", "rv"} and arrays["rv"].shape == arrays["masks"].shape
        np.testing.assert_array_equal(arrays["masks"], npz_arrays(reference)[name]["masks"])
    meta = json.loads((out / "meta.json").read_text())
    assert meta["channels"]["rv"]["weights_hash"] == weights_hash(rv_teacher)
    assert meta["teacher"]["weights_hash"] == weights_hash(teacher)
    assert label_dataset(data, rv_teacher, out, splits="VAL", channel="rv").skipped == 2


def test_other_teacher_is_refused_unless_overwrite(data, teacher, tmp_path):
    out = tmp_path / "t"
    label_dataset(data, teacher, out, splits="VAL")
    other = _teacher(7)
    with pytest.raises(DatasetError, match="another teacher") as err:
        label_dataset(data, other, out, splits="VAL")
    assert "meta.json" in str(err.value) and "\n" not in str(err.value)
    summary = label_dataset(data, other, out, splits="VAL", overwrite=True)
    assert summary.labelled == 2
    assert json.loads((out / "meta.json").read_text())["teacher"]["weights_hash"] == weights_hash(other)


def test_unreadable_clip_is_reported_and_skipped(tmp_path, teacher):
    data = pulsing_folder(tmp_path / "d", {"TRAIN": 3}, size=32, frames=6, broken=("clip_train_1",))
    summary = label_dataset(data, teacher, tmp_path / "out", splits="TRAIN")
    assert summary.labelled == 2 and [n for n, _ in summary.failed] == ["clip_train_1"]
    assert "clip_train_1.avi" in summary.failed[0][1]
    assert sorted(p.stem for p in (tmp_path / "out").glob("*.npz")) == ["clip_train_0", "clip_train_2"]


def test_cli(data, teacher, reference, tmp_path, capsys):
    ckpt = save_echonet_checkpoint(teacher, tmp_path / "teacher.pt")
    out = tmp_path / "cli"
    assert main(["label", str(data), "--teacher", str(ckpt), "--out", str(out), "--batch-size", "6",
                 "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["labelled"] == 7 and summary["frames"] == 63 and summary["frames_per_s"] > 0
    assert _same(npz_arrays(out), npz_arrays(reference))
    for argv, needle in [
        (["--teacher", str(tmp_path / "none.pt")], "none.pt: file not found"),
        (["--teacher", str(ckpt), "--shard", "2/2"], "shard 2/2"),
        (["--teacher", str(ckpt), "--split", "TRAINING"], "unknown split"),
        (["--teacher", str(ckpt), "--teacher-arch", "fcn_resnet50"], "records arch"),
        (["--teacher", str(ckpt), "--batch-size", "0"], "--batch-size"),
        (["--teacher", str(ckpt), "--device", "banana"], "unknown device 'banana'"),
    ]:
        assert main(["label", str(data), "--out", str(tmp_path / "x"), *argv]) == 2
        err = capsys.readouterr().err.strip()
        assert needle in err and len(err.splitlines()) == 1
    assert main(["label", str(tmp_path / "nodata"), "--teacher", str(ckpt), "--out", str(out)]) == 2
    assert "nodata" in capsys.readouterr().err
