"""End to end: `echodfkd evaluate` and `echodfkd report` on a tiny hand-built EchoNet-layout folder."""

from __future__ import annotations

import json

import numpy as np
import pytest

from echodfkd.cli import main
from echodfkd.report.evaluation import evaluate_predictions
from echodfkd.io.atomic import save_json, save_npz
from echodfkd.io.video import write_video

SIZE, T, PERIOD = 64, 40, 20
CX, CY = 32.0, 30.0


def radius(t):
    """LV radius: maxima (ED) at frames 0, 20, 40, minima (ES) at 10, 30."""
    return 12 + 6 * np.cos(2 * np.pi * np.asarray(t) / PERIOD)


def disks(r_scale=1.0):
    yy, xx = np.mgrid[:SIZE, :SIZE]
    d = np.hypot(xx - CX, yy - CY)
    return np.stack([d <= r_scale * radius(t) for t in range(T)])


def trace_rows(name, frame, r):
    """A 21-row EchoNet trace of a disk: a long axis then 20 horizontal chords."""
    rows = [f"{name}.avi,{CX:.2f},{CY - r:.2f},{CX:.2f},{CY + r:.2f},{frame}"]
    for k in range(20):
        y = CY - r + (k + 0.5) * 2 * r / 20
        half = np.sqrt(max(r * r - (y - CY) ** 2, 0.0))
        rows.append(f"{name}.avi,{CX - half:.3f},{y:.3f},{CX + half:.3f},{y:.3f},{frame}")
    return rows


@pytest.fixture
def tiny(tmp_path):
    """3 TEST clips at 50 fps; clip b's human ED is 2 frames late; clip c is listed as corrupted."""
    data, pred, teacher = tmp_path / "data", tmp_path / "pred", tmp_path / "teacher"
    (data / "Videos").mkdir(parents=True)
    human = {"a": (20, 10), "b": (22, 10), "c": (20, 30)}
    masks = disks()
    lines = ["FileName,EF,ESV,EDV,FrameHeight,FrameWidth,FPS,NumberOfFrames,Split"]
    tracings = ["FileName,X1,Y1,X2,Y2,Frame"]
    for k, (name, (ed, es)) in enumerate(human.items()):
        video = np.where(masks, 10, 60).astype(np.uint8)
        video[np.roll(masks, 3, axis=2) & ~masks] = 180     # a bright wall beside the cavity
        write_video(data / "Videos" / f"{name}.avi", video, 50.0)
        ef = 100 * (1 - (radius(10) / radius(0)) ** 3)
        lines.append(f"{name},{ef:.2f},10,40,{SIZE},{SIZE},{[50, 50, 25][k]},{T},TEST")
        tracings += trace_rows(name, es, radius(es)) + trace_rows(name, ed, radius(ed))
        save_npz(pred / f"{name}.npz", masks=(masks * 255).astype(np.uint8))
        save_npz(teacher / f"{name}.npz", masks=(disks(1.1) * 255).astype(np.uint8))
    lines.append(f"d,50,10,40,{SIZE},{SIZE},50,{T},TRAIN")          # another split, no prediction needed
    (data / "FileList.csv").write_text("\n".join(lines) + "\n")
    (data / "VolumeTracings.csv").write_text("\n".join(tracings) + "\n")
    save_json(pred / "meta.json", {"threshold_dice": 0.5, "threshold_afd": 0.5, "params": 714577})
    (tmp_path / "corrupted.csv").write_text("FileName,reason\nc.avi,blank_frames\n")
    return tmp_path


def test_evaluate_end_to_end(tiny):
    out = tiny / "report"
    m = evaluate_predictions(tiny / "data", tiny / "pred", split="TEST", teacher_dir=tiny / "teacher",
                             corrupted=tiny / "corrupted.csv", out=out, n_boot=200, overlays=2)
    assert m["n_clips"] == 3
    full, clean = m["afd"]["full"], m["afd"]["clean"]
    # a: found ED 20, ES 10 (exact). b: human ED 22 -> error 2. c: ES traced at 30 -> found 30.
    assert full["aFD_ED"] == pytest.approx(2 / 3) and full["aFD_ES"] == 0.0
    assert clean["n_clips"] == 2 and clean["aFD_ED"] == pytest.approx(1.0)
    assert full["aFD_ED_seconds"] == pytest.approx((0 + 2 / 50 + 0) / 3)
    assert m["es_baseline"]["full"]["aFD_ES"] == 0.0                    # find_peaks minima at 10 and 30
    seg = m["segmentation"]["vs_tracings"]
    assert seg["ED"]["n_videos"] == 3 and 0.85 < seg["overall"]["dice_per_video_mean"] <= 1.0
    assert 0.5 < m["segmentation"]["vs_teacher"]["dice_pooled"] < 1.0      # teacher masks are 10 % larger
    assert m["teacher_afd"]["full"]["aFD_ES"] == 0.0
    assert m["analysis"]["afd_by_fps"][0]["bin"] == "<30"               # clip c is at 25 fps
    assert m["analysis"]["ef"]["area_at_human_frames"]["n"] == 3
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["afd"]["full"]["aFD_ED"] == pytest.approx(2 / 3)
    text = (out / "report.md").read_text()
    assert "Table 2" in text and "per-video mean" in text.lower() and "pooled" in text.lower()
    pngs = sorted(p.name for p in (out / "figures").glob("*.png"))
    assert {"afd_vs_fps.png", "error_concentration.png", "ef_scatter.png"} <= set(pngs)
    assert sum(p.startswith("area_curve_") for p in pngs) == 2
    gifs = list((out / "overlays").glob("*.gif"))
    assert len(gifs) == 2 and all(g.stat().st_size > 0 for g in gifs)
    assert (out / "phases.csv").read_text().startswith("FileName,Phase,Human,Found")


def test_evaluate_with_a_user_signal(tiny):
    rows = ["FileName,Frame,Value"]
    for name in "abc":
        rows += [f"{name},{t},{v:.4f}" for t, v in enumerate(-np.cos(2 * np.pi * np.arange(T) / PERIOD))]
    (tiny / "signal.csv").write_text("\n".join(rows) + "\n")
    # the user signal is inverted: its maxima (ED) are at 10 and 30
    m = evaluate_predictions(tiny / "data", tiny / "pred", signal_csv=tiny / "signal.csv", n_boot=50)
    assert m["afd"]["signal"].startswith("user signal")
    assert m["afd"]["full"]["aFD_ED"] == pytest.approx((10 + 8 + 10) / 3)


def test_cli_evaluate_and_report(tiny, capsys):
    out = tiny / "report"
    rc = main(["evaluate", "--data", str(tiny / "data"), "--predictions", str(tiny / "pred"),
               "--out", str(out), "--bootstrap", "100", "--overlays", "0", "--threshold", "0.5"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "aFD (full, 3 clips)" in printed and "per-video mean" in printed
    sweep = tiny / "sweep"
    for name, params, scale in (("B1_l1", 5701, 2.0), ("B4_l1", 714577, 1.0)):
        run = sweep / name
        run.mkdir(parents=True)
        (run / "config.json").write_text(json.dumps({"blocks": int(name[1]), "layers": 1, "params": params}))
        metrics = json.loads((out / "metrics.json").read_text())
        metrics["afd"]["full"]["aFD_sum"] = scale
        (run / "metrics.json").write_text(json.dumps(metrics))
    assert main(["report", str(sweep), "--out", str(tiny / "sweep_report")]) == 0
    text = (tiny / "sweep_report" / "report.md").read_text()
    assert "Table 1" in text and "| B = 4 |" in text and "0.71 M" in text
    assert (tiny / "sweep_report" / "figures" / "scaling_laws.png").stat().st_size > 0


def test_cli_errors_are_one_line(tiny, capsys):
    (tiny / "pred" / "b.npz").unlink()
    rc = main(["evaluate", "--data", str(tiny / "data"), "--predictions", str(tiny / "pred"),
               "--out", str(tiny / "r")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "no prediction for 1 of 3" in err
    assert main(["evaluate", "--data", str(tiny / "data"), "--predictions", str(tiny / "pred"),
                 "--out", str(tiny / "r"), "--allow-missing", "--bootstrap", "20", "--overlays", "0"]) == 0
    np.savez(tiny / "pred" / "b.npz", other=np.zeros(3))
    rc = main(["evaluate", "--data", str(tiny / "data"), "--predictions", str(tiny / "pred"), "--out",
               str(tiny / "r")])
    assert rc == 2 and "b.npz: no 'masks' array" in capsys.readouterr().err
    rc = main(["report", str(tiny / "nowhere"), "--out", str(tiny / "r2")])
    assert rc == 2 and "sweep folder not found" in capsys.readouterr().err


def test_evaluate_against_phantom_ground_truth_only(tmp_path):
    """No VolumeTracings: every true ED/ES frame of GroundTruth/<name>.npz is a reference."""
    data, pred = tmp_path / "data", tmp_path / "pred"
    (data / "Videos").mkdir(parents=True)
    masks = disks()
    lines = ["FileName,EF,Split"]
    for name in ("p0", "p1"):
        write_video(data / "Videos" / f"{name}.avi", np.where(masks, 10, 90).astype(np.uint8), 50.0)
        save_npz(data / "GroundTruth" / f"{name}.npz", lv=masks, ed=np.array([0, 20]), es=np.array([10, 30]),
                 ef=np.array(60.0))
        save_npz(pred / f"{name}.npz", masks=(masks * 255).astype(np.uint8))
        lines.append(f"{name},60,TEST")
    (data / "FileList.csv").write_text("\n".join(lines) + "\n")
    m = evaluate_predictions(data, pred, n_boot=50, out=tmp_path / "r", overlays=1)
    assert "vs_tracings" not in m["segmentation"]
    assert m["segmentation"]["vs_ground_truth"]["dice_pooled"] == 1.0
    assert m["afd"]["references"].startswith("phantom ground truth")
    assert m["afd"]["full"]["aFD_ED"] == 0.0 and m["afd"]["full"]["aFD_ES"] == 0.0
    assert (tmp_path / "r" / "report.md").is_file()


def test_overlay_colours():
    from echodfkd.report.overlays import BOTH_RGB, STUDENT_RGB, TEACHER_RGB, overlay_frames
    frames = np.full((2, 12, 12), 100, np.uint8)
    student = np.zeros((2, 12, 12), bool)
    student[:, 2:8, 2:8] = True
    teacher = np.zeros_like(student)
    teacher[:, 2:10, 2:8] = True                       # shares the top edge with the student
    rgb = overlay_frames(frames, student, teacher, scale=1)
    assert tuple(rgb[0, 2, 4]) == BOTH_RGB               # top edge: both contours
    assert tuple(rgb[0, 7, 4]) == STUDENT_RGB            # student's bottom edge only
    assert tuple(rgb[0, 9, 4]) == TEACHER_RGB            # teacher's bottom edge only
    assert tuple(rgb[0, 5, 5]) == (100, 100, 100)        # inside: untouched


def test_dataset_level_overlap_functions_match_the_runner(tiny):
    from echodfkd.data import open_dataset
    from echodfkd.evaluate.segmentation import score_vs_teacher, score_vs_tracings

    ds = open_dataset(tiny / "data")
    names = ds.names("TEST")
    m = evaluate_predictions(tiny / "data", tiny / "pred", teacher_dir=tiny / "teacher", n_boot=100, overlays=0)
    tr = score_vs_tracings(ds, tiny / "pred", names, n_boot=100)
    assert tr["ES"]["dice_pooled"] == m["segmentation"]["vs_tracings"]["ES"]["dice_pooled"]
    assert tr["overall"]["dice_per_video_mean_ci90"] == \
        m["segmentation"]["vs_tracings"]["overall"]["dice_per_video_mean_ci90"]
    te = score_vs_teacher(tiny / "pred", tiny / "teacher", names, n_boot=100)
    assert te["iou_pooled"] == m["segmentation"]["vs_teacher"]["iou_pooled"]
    assert te["n_frames"] == 3 * T
