"""Real-time predictor and `echodfkd predict`: outputs, sizes/FPS, warm-up, post-processing, alert, bad inputs."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from scipy import ndimage

from echodfkd.cli import main
from echodfkd.data.phantom import generate_phantom, make_clip
from echodfkd.io.video import read_video, write_video
from echodfkd.models import Student
from echodfkd.stream import Predictor
from echodfkd.stream.alert import ALERT_FILE
from tiny_models import fitted_student, randomise_bn

SIZE = 64


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture
def tiny_run(tmp_path):
    """A random 2-block student saved as a run directory with calibrated-looking thresholds."""
    torch.manual_seed(0)
    run = tmp_path / "run"
    randomise_bn(Student(blocks=2)).save_pretrained(run, extra_config={"thresholds": {"dice": 0.4, "afd": 0.3},
                                                                        "infer_size": SIZE})
    return run


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A tiny student trained for a few seconds on phantom frames against their ground-truth LV masks."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)  # other module fixtures may run before one_torch_thread
    run = fitted_student(tmp_path_factory.mktemp("trained") / "run", SIZE, steps=60)
    torch.set_num_threads(old)
    return run


def _frames(seed: int, n: int, size: int = SIZE) -> np.ndarray:
    """n phantom frames (the phantom needs a whole beat, so short clips are cut from a longer one)."""
    return make_clip(seed=seed, index=0, size=size, frames=max(n, 40)).frames[:n]


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_predict_phantom_dataset_cli(tiny_run, tmp_path):
    data = generate_phantom(tmp_path / "ph", 3, size=SIZE, seed=1, workers=1)
    pred = tmp_path / "pred"
    assert main(["predict", str(data), "--student", str(tiny_run), "--out", str(pred), "--overlay"]) == 0
    names = sorted(p.stem for p in (data / "Videos").glob("*.avi"))
    areas = _rows(pred / "areas.csv")
    phases = json.loads((pred / "phases.json").read_text())
    meta = json.loads((pred / "meta.json").read_text())
    assert meta["threshold_dice"] == 0.4 and meta["threshold_afd"] == 0.3 and meta["status"] == "done"
    for name in names:
        frames, fps = read_video(data / "Videos" / f"{name}.avi")
        with np.load(pred / f"{name}.npz") as z:
            masks, stored = z["masks"], z["areas"]
        assert masks.shape == frames.shape and masks.dtype == np.uint8
        # areas.csv is the aFD-threshold area of the stored soft masks
        np.testing.assert_array_equal(stored, (masks >= 0.3 * 255).sum(axis=(1, 2)))
        assert [int(r["Area"]) for r in areas if r["FileName"] == name] == stored.tolist()
        assert phases[name]["fps"] == fps
        assert phases[name]["ED_s"] == pytest.approx([f / fps for f in phases[name]["ED"]])
        assert (pred / "overlays" / f"{name}.avi").is_file()
    assert sorted(r["FileName"] for r in _rows(pred / "alerts.csv")) == names
    # a rerun resumes: finished clips are not predicted again
    before = {n: (pred / f"{n}.npz").stat().st_mtime_ns for n in names}
    assert main(["predict", str(data), "--student", str(tiny_run), "--out", str(pred)]) == 0
    assert before == {n: (pred / f"{n}.npz").stat().st_mtime_ns for n in names}


def test_real_fixture_clip(shared_fixtures, tiny_run):
    frames, fps = read_video(shared_fixtures / "a4c_112x112_50fps.avi")
    result = Predictor(tiny_run).predict_clip(frames, fps)
    assert result.masks.shape == frames.shape == (173, 112, 112)
    assert result.fps == 50.0 and len(result.areas) == 173
    assert any("resized from 112x112" in n for n in result.notes)  # this run's model size is 64


@pytest.mark.parametrize("size,fps", [(224, 50.0), (SIZE, 30.0)])
def test_any_size_and_fps(tiny_run, tmp_path, size, fps):
    clip = make_clip(seed=2, index=0, size=size, frames=40, fps=fps)
    video = tmp_path / "in" / "clip.avi"
    write_video(video, clip.frames, fps)
    pred = tmp_path / "pred"
    assert main(["predict", str(video), "--student", str(tiny_run), "--out", str(pred)]) == 0
    with np.load(pred / "clip.npz") as z:
        assert z["masks"].shape == (40, size, size)
        info = json.loads(str(z["info"]))
    assert info["fps"] == fps
    assert json.loads((pred / "phases.json").read_text())["clip"]["fps"] == fps
    assert any("resized" in n for n in info["notes"]) == (size != SIZE)


def test_streaming_matches_student(tiny_run):
    frames = _frames(4, 12)
    student = Student.from_pretrained(tiny_run)
    with torch.no_grad():
        logits = student(torch.from_numpy(frames.astype(np.float32))[None, :, None])[0, :, 0]
    expected = torch.round(torch.sigmoid(logits) * 255).to(torch.uint8).numpy()
    pred = Predictor(tiny_run)
    got = np.stack([pred.push(f).soft for f in frames])
    assert np.abs(got.astype(int) - expected).max() <= 1  # float rounding at the .5 boundary only


def test_warmup_repeats_first_frame(tiny_run):
    frames = _frames(5, 6)
    student = Student.from_pretrained(tiny_run)
    padded = np.concatenate([np.repeat(frames[:1], 3, axis=0), frames])
    with torch.no_grad():
        logits = student(torch.from_numpy(padded.astype(np.float32))[None, :, None])[0, 3:, 0]
    expected = torch.round(torch.sigmoid(logits) * 255).numpy()
    pred = Predictor(tiny_run, warmup=3)
    got = np.stack([r.soft for r in pred.stream_clip(frames)])
    assert np.abs(got.astype(int) - expected).max() <= 1
    assert pred.settings()["warmup"] == 3


def test_largest_component_keeps_one_region(trained_run):
    frames = _frames(6, 20)
    noisy = frames.copy()
    noisy[:, :6, :6] = 255  # a bright corner blob invites a second region
    plain = Predictor(trained_run).predict_clip(noisy, 50)
    kept = Predictor(trained_run, largest_component=True).predict_clip(noisy, 50)
    for soft in kept.masks:
        assert ndimage.label(soft >= 0.5 * 255, structure=np.ones((3, 3)))[1] <= 1
    assert (kept.masks <= plain.masks).all()  # only removes pixels


def test_alert_flags_corrupted_clips(trained_run, tmp_path):
    clean = [make_clip(seed=9, index=i, size=SIZE, frames=60) for i in range(6)]
    pred = Predictor(trained_run)
    config = pred.calibrate_alert([(c.frames, c.fps) for c in clean[:5]], false_alarm_rate=0.2)
    assert config.calibrated and (trained_run / ALERT_FILE).is_file()
    held_out = clean[5]
    blank = held_out.frames.copy()
    blank[20:35] = 0
    noise = np.random.default_rng(0).integers(0, 256, held_out.frames.shape, dtype=np.uint8)
    ok = pred.predict_clip(held_out.frames, held_out.fps).alert
    bad = [pred.predict_clip(v, held_out.fps).alert for v in (blank, noise)]
    assert not ok.flagged, ok.reasons
    for b in bad:
        assert b.flagged and b.score > ok.score and b.reasons
    assert "blank" in bad[0].reasons[0] or "blank" in " ".join(bad[0].reasons)
    # a new predictor on the run picks the calibration up from RUN/alert.json
    again = Predictor(trained_run)
    assert again.alert_config.calibrated and again.alert_config.threshold == config.threshold


def test_calibrate_alert_cli_and_alerts_csv(trained_run, tmp_path):
    data = generate_phantom(tmp_path / "ph", 8, size=SIZE, seed=2, corrupt=0.25, workers=1, frames=60)
    assert main(["predict", str(data), "--student", str(trained_run), "--calibrate-alert", "--split", "TRAIN,VAL",
                 "--false-alarm-rate", "0.1"]) == 0
    pred = tmp_path / "pred"
    assert main(["predict", str(data), "--student", str(trained_run), "--out", str(pred)]) == 0
    kinds = {r["FileName"]: r["kind"] for r in _rows(data / "GroundTruth" / "corrupted.csv")}
    alerts = {r["FileName"]: r for r in _rows(pred / "alerts.csv")}
    video_bad = [n for n, k in kinds.items() if k in ("blank_frames", "noisy_video")]
    assert video_bad and all(alerts[n]["Flagged"] == "1" for n in video_bad)
    assert all(alerts[n]["Calibrated"] == "1" for n in alerts)


def test_folder_of_videos_with_a_bad_one(tiny_run, tmp_path, capsys):
    folder = tmp_path / "videos"
    write_video(folder / "good.avi", _frames(1, 20), 50)
    (folder / "broken.avi").write_bytes(b"not a video at all")
    pred = tmp_path / "pred"
    assert main(["predict", str(folder), "--student", str(tiny_run), "--out", str(pred)]) == 1
    captured = capsys.readouterr()
    assert "skipped broken" in captured.out and (pred / "good.npz").is_file() and not (pred / "broken.npz").exists()
    assert "echodfkd predict: warning: skipped broken:" in captured.err
    assert main(["predict", str(folder), "--student", str(tiny_run), "--out", str(pred), "--skip-bad"]) == 0


@pytest.mark.parametrize("case", ["missing_video", "not_video", "empty_dir", "missing_model", "bad_threshold",
                                  "split_on_file", "no_onnx", "other_settings", "negative_warmup"])
def test_bad_inputs_one_line(case, tiny_run, tmp_path, capsys):
    video = tmp_path / "clip.avi"
    write_video(video, _frames(1, 20), 50)
    pred = tmp_path / "pred"
    args = {
        "missing_video": [str(tmp_path / "nope.avi"), "--student", str(tiny_run), "--out", str(pred)],
        "not_video": [str(tmp_path / "bad.avi"), "--student", str(tiny_run), "--out", str(pred)],
        "empty_dir": [str(tmp_path / "empty"), "--student", str(tiny_run), "--out", str(pred)],
        "missing_model": [str(video), "--student", str(tmp_path / "norun"), "--out", str(pred)],
        "bad_threshold": [str(video), "--student", str(tiny_run), "--out", str(pred), "--threshold", "1.5"],
        "split_on_file": [str(video), "--student", str(tiny_run), "--out", str(pred), "--split", "TEST"],
        "no_onnx": [str(video), "--student", str(tiny_run), "--out", str(pred), "--backend", "onnx"],
        "other_settings": [str(video), "--student", str(tiny_run), "--out", str(pred), "--warmup", "2"],
        "negative_warmup": [str(video), "--student", str(tiny_run), "--out", str(pred), "--warmup", "-1"],
    }[case]
    (tmp_path / "bad.avi").write_text("hello")
    (tmp_path / "empty").mkdir()
    if case == "other_settings":
        assert main(["predict", str(video), "--student", str(tiny_run), "--out", str(pred)]) == 0
        capsys.readouterr()
    assert main(["predict", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err and err.startswith("echodfkd predict: error:")


def test_alert_features_ignore_isolated_glitches():
    from echodfkd.stream.alert import aperiodicity, clip_features

    n = 100
    std, spatial, temporal = np.full(n, 30.0), np.full(n, 0.9), np.full(n, 0.95)
    t = np.arange(n)
    area = 0.1 + 0.03 * np.sin(2 * np.pi * t / 40)  # a 0.8 s beat at 50 fps
    std[10] = 0.0  # one dropped frame
    one = clip_features(std, spatial, temporal, area, np.full(n, 0.2), 50.0)
    std[50:58] = 0.0  # an 8-frame blank stretch
    run = clip_features(std, spatial, temporal, area, np.full(n, 0.2), 50.0)
    assert one["blank"] == 0.0 and run["blank"] == pytest.approx(0.08)
    assert aperiodicity(area, 50.0) < 0.05 < aperiodicity(np.random.default_rng(0).random(n), 50.0)


def test_bf16_engine_matches_fp32(trained_run):
    from echodfkd.measures.masks import binarize, dice

    frames = _frames(8, 30)
    fp32 = Predictor(trained_run).predict_clip(frames, 50)
    bf16 = Predictor(trained_run, precision="bf16").predict_clip(frames, 50)
    assert dice(binarize(bf16.masks, 0.5), binarize(fp32.masks, 0.5)) >= 0.99
