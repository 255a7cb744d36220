"""CAMUS end to end: phantom CAMUS folders, their round trip through data.camus, scoring, `echodfkd camus`."""

from __future__ import annotations

import csv
import json
import shutil

import cv2
import numpy as np
import pandas as pd
import pytest
import torch

from echodfkd.cli import main
from echodfkd.data.camus import LV_LABEL, Camus
from echodfkd.data.phantom.camus_layout import (camus_shape, generate_camus, grade_quality, half_sequence,
                                                 pixel_mm, sector_mask, view_clip)
from echodfkd.errors import DatasetError
from echodfkd.evaluate.camus import (check_folder, crop_square, ef_from_masks, evaluate_camus, isotropic,
                                     predict_sequence, square_box, summarize_camus, uncrop_square)
from echodfkd.models import Student

WIDTH, PATIENTS, SEED = 64, 3, 2

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def camus_dir(tmp_path_factory):
    """A 3-patient phantom CAMUS folder (2CH stand-in + 4CH), 64 px wide."""
    return generate_camus(tmp_path_factory.mktemp("camus") / "CAMUS", PATIENTS, seed=SEED, width=WIDTH)


def _save_run(path, blocks=2, layers=1, seed=0):
    torch.manual_seed(seed)
    Student(blocks=blocks, layers=layers, filters=4).eval().save_pretrained(path, extra_config={"infer_size": 32})
    return path


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    return _save_run(tmp_path_factory.mktemp("run") / "run")


# ------------------------------------------------------------------------------------------ the layout
def test_round_trip_gives_back_the_phantom_masks(camus_dir):
    ds = Camus(camus_dir)
    assert ds.patients() == ["patient0001", "patient0002", "patient0003"]
    h, w = camus_shape(WIDTH)
    assert h > w  # portrait, like CAMUS
    for i, patient in enumerate(ds.patients()):
        assert ds.views(patient) == ["2CH", "4CH"] and ds.format(patient) == "nifti"
        for view in ("2CH", "4CH"):
            clip = view_clip(SEED, i, view, WIDTH)
            ed, es = half_sequence(clip)
            assert ed < es and not any(ed < e < es for e in clip.ed)
            seq = ds.sequence(patient, view)
            n = es - ed + 1
            assert seq.frames.shape == (n, h, w) and (seq.ed, seq.es) == (0, n - 1)
            assert np.array_equal(seq.frames[:, :WIDTH], clip.frames[ed:es + 1])
            assert not seq.frames[:, WIDTH:].any() and not seq.labels[:, WIDTH:].any()
            assert np.array_equal(seq.lv[:, :WIDTH], clip.lv[ed:es + 1])  # exactly the phantom's LV
            assert seq.spacing == pytest.approx((pixel_mm(WIDTH), pixel_mm(WIDTH)))
            myo = seq.labels == 2
            assert myo.any() and not (myo & seq.lv).any()
            assert not (myo[:, :WIDTH] & clip.rv[ed:es + 1]).any()
            assert not (myo[:, :WIDTH] & ~sector_mask(clip.frames)).any()
            assert set(np.unique(seq.labels)) <= {0, 1, 2}
            for phase, k in (("ED", 0), ("ES", n - 1)):
                image, labels = ds.image(patient, view, phase)
                assert np.array_equal(image, seq.frames[k]) and np.array_equal(labels, seq.labels[k])
            info = seq.info
            assert (info["ED"], info["ES"], info["NbFrame"]) == (1, n, n)
            assert info["EF"] == pytest.approx(clip.ef, abs=0.05)
            assert info["FrameRate"] == clip.fps


def test_quality_grades_rank_the_folder_in_camus_mix(camus_dir):
    ds = Camus(camus_dir)
    infos = [ds.info(p, v) for p in ds.patients() for v in ("2CH", "4CH")]
    cnr = np.array([i["PhantomCNR"] for i in infos])
    grades = [i["ImageQuality"] for i in infos]
    assert grades == grade_quality(cnr)
    rank = {"Poor": 0, "Medium": 1, "Good": 2}
    order = np.argsort(cnr)
    assert [rank[grades[i]] for i in order] == sorted(rank[g] for g in grades)  # higher contrast, better grade
    assert grade_quality(np.arange(20.0)) == ["Poor"] * 4 + ["Medium"] * 9 + ["Good"] * 7  # 20/45/35 %


def test_phantom_command_writes_camus_and_resumes(tmp_path, capsys):
    out = tmp_path / "c"
    assert main(["phantom", "--out", str(out), "--layout", "camus", "--videos", "2", "--size", "48", "--seed", "4"]) == 0
    assert "2 CAMUS patients" in capsys.readouterr().out
    first = (out / "database_nifti" / "patient0002" / "patient0002_4CH_half_sequence.nii.gz").read_bytes()
    shutil.rmtree(out / "database_nifti" / "patient0002")  # an interrupted run: the rerun remakes it alone
    assert main(["phantom", "--out", str(out), "--layout", "camus", "--videos", "2", "--size", "48", "--seed", "4"]) == 0
    assert (out / "database_nifti" / "patient0002" / "patient0002_4CH_half_sequence.nii.gz").read_bytes() == first
    assert len(Camus(out)) == 2 and Camus(out).sequence("patient0001", "2CH").frames.shape[1:] == camus_shape(48)
    capsys.readouterr()
    assert main(["phantom", "--out", str(out), "--layout", "camus", "--videos", "2", "--size", "64", "--seed", "4"]) == 2
    assert "other settings" in capsys.readouterr().err
    assert main(["phantom", "--out", str(tmp_path / "d"), "--layout", "camus", "--corrupt", "0.5"]) == 2
    assert "--corrupt: not available with --layout camus" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ scoring
@pytest.mark.parametrize("shape,rect,box", [((5, 40, 30), (2, 38, 4, 24), (2, -4, 36)),
                                            ((5, 30, 40), (3, 13, 5, 35), (-7, 5, 30))])
def test_square_crop_round_trip(shape, rect, box):
    frames = np.zeros(shape, np.uint8)
    y0, y1, x0, x1 = rect
    frames[:, y0:y1, x0:x1] = np.random.default_rng(0).integers(1, 255, (shape[0], y1 - y0, x1 - x0))
    assert square_box(frames) == box  # the square around the content, centred, past the image edge if need be
    cut = crop_square(frames, box)
    assert cut.shape == (shape[0], box[2], box[2]) and cut.sum(dtype=np.int64) == frames.sum(dtype=np.int64)
    assert np.array_equal(uncrop_square(cut, box, shape[1:]), frames)


class _Oracle:
    """Stands in for the predictor: returns the truth (optionally shifted right) in the cropped frame."""

    thresholds = {"dice": 0.5, "afd": 0.5}

    def __init__(self, ds: Camus, items, shift: int = 0, framing: str = "box"):
        self.queue = [ds.sequence(i.patient, i.view) for i in items]
        self.shift, self.framing = shift, framing

    def predict_clip(self, frames, fps):
        seq = self.queue.pop(0)
        truth = np.roll(seq.lv, self.shift, axis=2).astype(np.uint8) * 255
        if self.framing == "sector":
            from echodfkd.data.sector import find_sector, frame_clip

            masks = frame_clip(truth, *find_sector(seq.frames))  # framed exactly as the frames were
        else:
            masks = crop_square(truth, square_box(seq.frames))
        assert masks.shape == frames.shape  # the crop the predictor is given

        class R:
            pass

        r = R()
        r.masks = masks
        return r


def test_truth_masks_score_one_and_shifted_masks_score_their_overlap(camus_dir):
    ds = Camus(camus_dir)
    items = check_folder(ds, ("4CH", "2CH"))
    rows, per_view = evaluate_camus(ds, _Oracle(ds, items), items, 0.5)
    assert len(per_view) == 2 * PATIENTS and len(rows) == 4 * PATIENTS
    assert (per_view[["Dice_ED", "Dice_ES"]] == 1.0).all().all()
    np.testing.assert_allclose(per_view["EF_pred"], per_view["EF_truth"])
    summary = summarize_camus(rows, per_view, n_boot=50)
    assert summary["all"]["overall"]["dice_per_video_mean"] == 1.0 == summary["all"]["overall"]["iou_pooled"]
    assert set(summary["by_view"]) == {"4CH", "2CH"}

    rows, per_view = evaluate_camus(ds, _Oracle(ds, items, shift=3), items, 0.5)
    for item, row in zip(items, per_view.itertuples()):
        seq = ds.sequence(item.patient, item.view)
        for phase, k in (("ED", seq.ed), ("ES", seq.es)):
            a, b = seq.lv[k], np.roll(seq.lv[k], 3, axis=1)
            expected = 2 * (a & b).sum() / (a.sum() + b.sum())
            assert getattr(row, f"Dice_{phase}") == pytest.approx(expected)
            assert 0 < expected < 1
    summary = summarize_camus(rows, per_view, n_boot=50)
    i, u = rows["I"].sum(), rows["U"].sum()
    assert summary["all"]["overall"]["dice_pooled"] == pytest.approx(2 * i / (u + i))
    assert summary["all"]["overall"]["dice_per_video_mean"] == pytest.approx(per_view["Dice_mean"].mean())


def test_sector_framing_maps_masks_back(camus_dir):
    from echodfkd.data.sector import find_sector

    ds = Camus(camus_dir)
    items = check_folder(ds, ("4CH",))
    oracle = _Oracle(ds, items, framing="sector")
    for item in items:
        seq = ds.sequence(item.patient, item.view)
        soft, used = predict_sequence(oracle, seq, "sector")
        assert used == "sector" and soft.shape == seq.frames.shape
        # What comes back is the truth inside the fan found and EchoNet's square crop of it, at the native size.
        fan, g = find_sector(seq.frames)
        box = np.zeros_like(fan)
        box[max(g.crop_y, 0):g.crop_y + g.crop_side, max(g.crop_x, 0):g.crop_x + g.crop_side] = True
        expected = seq.lv & fan & box
        got = soft >= 128
        for k in (seq.ed, seq.es):
            assert 2 * (got[k] & expected[k]).sum() / (got[k].sum() + expected[k].sum()) > 0.9
    rows, per_view = evaluate_camus(ds, _Oracle(ds, items, framing="sector"), items, 0.5, framing="sector")
    assert (per_view["Framing"] == "sector").all() and len(rows) == 2 * len(items)


def test_ef_uses_square_pixels():
    mask = np.zeros((120, 120), np.uint8)
    ed = cv2.ellipse(mask.copy(), (60, 60), (20, 45), 0, 0, 360, 1, -1).astype(bool)
    es = cv2.ellipse(mask.copy(), (60, 66), (15, 38), 0, 0, 360, 1, -1).astype(bool)
    square = ef_from_masks(ed, es)
    # The same hearts sampled with rows twice as tall as columns are wide.
    squash = [cv2.resize(m.astype(np.uint8), (120, 60), interpolation=cv2.INTER_NEAREST).astype(bool) for m in (ed, es)]
    assert ef_from_masks(*squash, spacing=(2.0, 1.0)) == pytest.approx(square, abs=1.5)
    assert isotropic(squash[0], (2.0, 1.0)).shape == (120, 120) and isotropic(ed, (0.3, 0.3)) is ed
    assert np.isnan(ef_from_masks(np.zeros_like(ed), es))


# ------------------------------------------------------------------------------------------ the command
def test_camus_command_end_to_end(camus_dir, tiny_run, tmp_path, capsys):
    out = tmp_path / "report"
    assert main(["camus", "--data", str(camus_dir), "--student", str(tiny_run), "--out", str(out),
                 "--bootstrap", "50", "--warmup", "2"]) == 0
    text = capsys.readouterr().out
    assert "6 half-sequences" in text and "per-video mean" in text
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["settings"]["warmup"] == 2 and metrics["student"]["blocks"] == 2
    assert metrics["settings"]["framing"] == "box" and metrics["settings"]["framing_fallbacks"] == 0
    per_view = pd.read_csv(out / "per_view.csv")
    overlaps = pd.read_csv(out / "overlaps.csv")
    assert len(per_view) == 6 and len(overlaps) == 12 and set(per_view["View"]) == {"4CH", "2CH"}
    overall = metrics["segmentation"]["all"]["overall"]
    assert overall["dice_per_video_mean"] == pytest.approx(per_view["Dice_mean"].mean())
    i, u = overlaps["I"].sum(), overlaps["U"].sum()
    assert overall["dice_pooled"] == pytest.approx(2 * i / (u + i) if u + i else 1.0)
    for q in set(per_view["Quality"]):
        assert metrics["segmentation"]["by_quality"][q]["overall"]["n_videos"] == (per_view["Quality"] == q).sum()
    report = (out / "report.md").read_text()
    assert "## By view and image quality" in report and "single-plane area-length" in report
    for fig in metrics["figures"]:
        assert (out / fig).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_camus_sweep_makes_table3_and_keeps_finished_runs(camus_dir, tmp_path, capsys):
    sweep = tmp_path / "sweep"
    for b, l in ((2, 1), (2, 2), (1, 1)):
        _save_run(sweep / f"b{b}_l{l}", b, l)
    (sweep / "notes").mkdir()  # not a run: ignored
    out = tmp_path / "t3"
    args = ["camus", str(camus_dir), "--student", str(sweep), "--out", str(out), "--bootstrap", "20"]
    assert main(args) == 0
    capsys.readouterr()
    with open(out / "table3.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted(r["run"] for r in rows) == ["b1_l1", "b2_l1", "b2_l2"]
    report = (out / "report.md").read_text()
    assert "Table 3 (paper layout)" in report and "| B1 | B2 |" in report
    for r in rows:
        m = json.loads((out / r["run"] / "metrics.json").read_text())
        assert float(r["dice_all"]) == pytest.approx(m["segmentation"]["all"]["overall"]["dice_per_video_mean"])
    assert main(args) == 0
    assert capsys.readouterr().out.count("kept (already scored") == 3


# ------------------------------------------------------------------------------------------ bad input
def _copy(camus_dir, tmp_path):
    return shutil.copytree(camus_dir, tmp_path / "copy")


@pytest.mark.parametrize("case,expected", [
    ("missing_gt", "patient0002_4CH_ES_gt.nii.gz: missing"),
    ("missing_cfg", "Info_2CH.cfg: missing"),
    ("not_camus", "no patientXXXX folder found"),
    ("bad_view", "unknown view 3CH"),
    ("empty_run", "not a student run"),
    ("no_weights", "model.safetensors: missing"),
    ("no_run", "absent: folder not found"),
])
def test_bad_input_is_one_line(case, expected, camus_dir, tiny_run, tmp_path, capsys):
    data, student, views = _copy(camus_dir, tmp_path), tiny_run, "4CH,2CH"
    if case == "missing_gt":
        (data / "database_nifti" / "patient0002" / "patient0002_4CH_ES_gt.nii.gz").unlink()
    elif case == "missing_cfg":
        (data / "database_nifti" / "patient0003" / "Info_2CH.cfg").unlink()
    elif case == "not_camus":
        data = tmp_path / "empty"
        data.mkdir()
    elif case == "bad_view":
        views = "4CH,3CH"
    elif case == "empty_run":
        student = tmp_path / "notarun"
        student.mkdir()
    elif case == "no_weights":
        student = tmp_path / "half"
        student.mkdir()
        shutil.copy(tiny_run / "config.json", student / "config.json")
    elif case == "no_run":
        student = tmp_path / "absent"
    rc = main(["camus", "--data", str(data), "--student", str(student), "--views", views,
               "--out", str(tmp_path / "rep")])
    err = capsys.readouterr().err
    assert rc == 2 and expected in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "rep" / "metrics.json").exists()


def test_check_folder_counts_every_missing_label(camus_dir, tmp_path):
    data = _copy(camus_dir, tmp_path)
    for p in sorted((data / "database_nifti").glob("*/*_ED_gt.nii.gz")):
        p.unlink()
    with pytest.raises(DatasetError, match=r"and 5 more missing ED/ES label"):
        check_folder(Camus(data), ("4CH", "2CH"))


def test_2019_mhd_release_scores_like_the_nifti_one(camus_dir, tiny_run, tmp_path):
    import SimpleITK as sitk

    from echodfkd.data.camus import read_volume

    mhd = tmp_path / "camus2019" / "training"
    for nii in sorted((camus_dir / "database_nifti").glob("*/*.nii.gz")):
        array, spacing = read_volume(nii)
        stem = nii.name[:-len(".nii.gz")].replace("half_sequence", "sequence")
        image = sitk.GetImageFromArray(array if "sequence" in stem else array[0])
        image.SetSpacing((spacing[1], spacing[0]) + ((1.0,) if "sequence" in stem else ()))
        (mhd / nii.parent.name).mkdir(parents=True, exist_ok=True)
        sitk.WriteImage(image, str(mhd / nii.parent.name / f"{stem}.mhd"))
    for cfg in (camus_dir / "database_nifti").glob("*/Info_*.cfg"):  # 2019 cfgs call the EF "LVef"
        (mhd / cfg.parent.name / cfg.name).write_text(cfg.read_text().replace("EF:", "LVef:"))
    for data, out in ((camus_dir, tmp_path / "a"), (mhd.parent, tmp_path / "b")):
        assert main(["camus", str(data), "--student", str(tiny_run), "--out", str(out), "--bootstrap", "10"]) == 0
    a, b = (pd.read_csv(tmp_path / x / "per_view.csv") for x in "ab")
    pd.testing.assert_frame_equal(a, b)
    assert Camus(mhd.parent).format("patient0001") == "mhd"
