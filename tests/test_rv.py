"""The LV+RV student end to end on a tiny phantom: RV teacher from the RV truth, label, 2-channel distill,
predict (RV thresholds in meta.json), evaluate (RV Dice/IoU vs the RV truth and the RV teacher)."""

from __future__ import annotations

import json

import pytest
import torch

from echodfkd.cli import main
from echodfkd.data import open_dataset
from echodfkd.data.phantom import generate_phantom
from echodfkd.evaluate.runner import rv_threshold
from echodfkd.teacher.model import Teacher, build_segmenter, save_echonet_checkpoint
from tiny_echonet import pulsing_folder

ARCH = "lraspp_mobilenet_v3_large"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_rv_teacher_label_distill_predict_evaluate(tmp_path, capsys):
    data = generate_phantom(tmp_path / "phantom", 10, size=32, frames=24, workers=1)
    rv_ckpt = tmp_path / "rv" / "teacher.pt"
    assert main(["teacher", "train", str(data), "--channel", "rv", "--teacher-arch", ARCH, "--out", str(rv_ckpt.parent),
                 "--epochs", "2", "--batch-size", "8", "--dense-truth", "6", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["channel"] == "rv" and result["validated_on"] == "VAL"
    splits = {s: len(open_dataset(data).names(s)) for s in ("TRAIN", "VAL", "TEST")}
    assert result["train_frames"] == 4 * splits["TRAIN"] and result["val_frames"] == 4 * splits["VAL"]  # 24/6
    raw = torch.load(rv_ckpt, weights_only=True)
    assert raw["channel"] == "rv" and raw["complete"] is True

    torch.manual_seed(0)  # an untrained LV teacher: this test is about the RV plumbing
    lv_ckpt = save_echonet_checkpoint(Teacher(build_segmenter(ARCH), arch=ARCH).eval(), tmp_path / "lv.pt")
    targets = tmp_path / "targets"
    assert main(["label", str(data), "--teacher", str(lv_ckpt), "--out", str(targets), "--split", "all"]) == 0
    assert main(["label", str(data), "--teacher", str(rv_ckpt), "--out", str(targets), "--channel", "rv",
                 "--split", "all"]) == 0

    run = tmp_path / "run"
    assert main(["distill", "--data", str(data), "--targets", str(targets), "--out", str(run), "--blocks", "1",
                 "--epochs", "1", "--seq-len", "6", "--batch-size", "2"]) == 0
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["out_channels"] == 2 and 0 < cfg["thresholds_rv"]["dice"] < 1

    pred = tmp_path / "pred"
    assert main(["predict", str(data), "--student", str(run), "--out", str(pred), "--split", "TEST"]) == 0
    meta = json.loads((pred / "meta.json").read_text())
    assert meta["thresholds_rv"] == cfg["thresholds_rv"]

    capsys.readouterr()
    ev = tmp_path / "evaluation"
    assert main(["evaluate", "--data", str(data), "--predictions", str(pred), "--teacher-predictions",
                 str(targets), "--out", str(ev), "--bootstrap", "50", "--overlays", "0"]) == 0
    printed = capsys.readouterr().out
    assert "Dice RV vs ground truth" in printed and "Dice RV vs RV teacher" in printed
    metrics = json.loads((ev / "metrics.json").read_text())
    seg = metrics["segmentation"]
    assert metrics["thresholds"]["rv_dice"] == cfg["thresholds_rv"]["dice"]
    assert "vs_ground_truth" in seg  # LV beside RV
    for key in ("rv_vs_ground_truth", "rv_vs_teacher"):
        assert seg[key]["n_videos"] == splits["TEST"] and seg[key]["n_frames"] == 24 * splits["TEST"]
        assert 0 <= seg[key]["dice_pooled"] <= 1 and 0 <= seg[key]["iou_pooled"] <= seg[key]["dice_pooled"]
    report = (ev / "report.md").read_text()
    assert "RV segmentation against phantom ground truth" in report and "RV agreement with the RV teacher" in report


def test_an_lv_only_student_has_no_rv_section(tmp_path):
    from echodfkd.report.evaluation import evaluate_predictions
    from echodfkd.io.atomic import save_npz

    data = generate_phantom(tmp_path / "phantom", 3, size=32, frames=24, workers=1)
    pred = tmp_path / "pred"
    for name in ("PH_dyn_000000", "PH_dyn_000001", "PH_dyn_000002"):
        with open(data / "GroundTruth" / f"{name}.npz", "rb") as fh:
            import numpy as np
            lv = np.load(fh)["lv"]
        save_npz(pred / f"{name}.npz", masks=(lv * 255).astype("uint8"))
    m = evaluate_predictions(data, pred, split=None, n_boot=20)
    assert m["segmentation"]["vs_ground_truth"]["dice_pooled"] == 1.0
    assert not any(k.startswith("rv_") for k in m["segmentation"]) and "rv_dice" not in m["thresholds"]


def test_rv_threshold_from_meta_then_the_run(tmp_path):
    assert rv_threshold({"thresholds_rv": {"dice": 0.3, "afd": 0.4}}) == 0.3
    (tmp_path / "config.json").write_text(json.dumps({"thresholds_rv": {"dice": 0.35}}))
    assert rv_threshold({"model": str(tmp_path)}) == 0.35  # predictions made before meta.json carried it
    assert rv_threshold({}) == 0.5 and rv_threshold({"thresholds_rv": {"dice": 7}}) == 0.5


def test_rv_teacher_needs_a_phantom(tmp_path, capsys):
    data = pulsing_folder(tmp_path / "data", {"TRAIN": 2, "VAL": 1}, size=32, frames=8)
    rc = main(["teacher", "train", str(data), "--channel", "rv", "--out", str(tmp_path / "rv"), "--epochs", "1"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "RV ground truth" in err and "GroundTruth/" in err


def test_rv_teacher_from_a_users_masks_folder(tmp_path, capsys):
    import shutil

    import numpy as np

    from echodfkd.io.atomic import save_npz

    data = generate_phantom(tmp_path / "phantom", 8, size=32, frames=24, workers=1)
    ds = open_dataset(data)
    masks = tmp_path / "masks"
    train = ds.names("TRAIN")
    for name in train[1:] + ds.names("VAL"):  # the first TRAIN clip has no mask file
        with np.load(data / "GroundTruth" / f"{name}.npz") as gt:
            save_npz(masks / f"{name}.npz", rv=(gt["rv"] * 255).astype(np.uint8))
    shutil.rmtree(data / "GroundTruth")  # the masks folder is all it has
    out = tmp_path / "rv" / "teacher.pt"
    assert main(["teacher", "train", str(data), "--channel", "rv", "--masks", str(masks), "--teacher-arch", ARCH,
                 "--out", str(out.parent), "--epochs", "1", "--batch-size", "8", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["train_frames"] == 6 * (len(train) - 1) and result["val_frames"] == 6 * len(ds.names("VAL"))
    assert [name for name, _ in result["skipped"]] == [train[0]] and "no mask file" in result["skipped"][0][1]
    assert torch.load(out, weights_only=True)["channel"] == "rv"

    rc = main(["teacher", "train", str(data), "--channel", "rv", "--masks", str(tmp_path / "none"),
               "--out", str(out.parent), "--epochs", "1"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "masks folder not found" in err
