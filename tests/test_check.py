"""Dataset checker: every reason on a generated folder, report outputs, and the real fixture clip."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import pandas as pd
import pytest
from echonet_folders import beating_clip, filelist_row, make_folder, standard_tracings, trace_rows

from echodfkd.data.check import REASONS, check_dataset, check_video, summarize
from echodfkd.data.video_checks import CheckConfig, frame_problems, longest_run
from echodfkd.errors import DatasetError
from echodfkd.io.video import read_video

N, S = 30, 64  # frames and size of the generated clips


def _noise(frames: int, size: int, seed: int, blur: float = 0.0) -> np.ndarray:
    """Speckle-like noise without anatomy, redrawn each frame (optionally smooth in space)."""
    rng = np.random.default_rng(seed)
    noise = np.clip(rng.rayleigh(70, (frames, size, size)), 0, 255).astype(np.float32)
    if blur:
        noise = np.stack([cv2.GaussianBlur(f, (0, 0), blur) for f in noise])
    return np.clip(noise, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def problem_folder(tmp_path_factory):
    """One clip per reason, plus two good clips; returns (root, expected {(clip, reason)})."""
    root = tmp_path_factory.mktemp("check") / "ds"
    good = beating_clip(N, S, 0)
    clips = {"good": good, "good2": beating_clip(N, S, 1), "missing": None, "zero": good, "cut": good,
             "text": good, "short": good[:10], "blank": good.copy(), "noisy": good.copy(),
             "smooth_noise": _noise(N, S, 3, blur=1.5), "mismatch": beating_clip(N + 4, S, 2),
             "untraced": good, "garbled_trace": good, "multi": good, "incomplete": good, "close": good,
             "equal": good, "single": good, "late": good}
    clips["blank"][10:16] = 0
    clips["noisy"][5:25] = _noise(20, S, 4)
    rows = [filelist_row(n, f if f is not None else good, fps=50) for n, f in clips.items()]
    rows[list(clips).index("mismatch")]["NumberOfFrames"] = N  # the video has N + 4
    tracings = []
    for name in clips:
        if name == "untraced":
            continue
        if name == "multi":
            tracings += standard_tracings(name) + trace_rows(name, 5, 33, 32, 12, 18)  # 2 annotators at ED
        elif name == "incomplete":
            tracings += standard_tracings(name) + trace_rows(name, 20, 32, 32, 8, 12)[:15]
        elif name == "close":
            tracings += standard_tracings(name, ed=7, es=8)
        elif name == "equal":
            tracings += trace_rows(name, 3, 32, 32, 10, 14) + trace_rows(name, 13, 32, 32, 10, 14)
        elif name == "single":
            tracings += trace_rows(name, 3, 32, 32, 10, 14)
        elif name == "short":
            tracings += standard_tracings(name, ed=2, es=8)
        elif name == "late":
            tracings += standard_tracings(name, ed=5, es=40)  # frame 40 of a 30-frame clip
        elif name == "garbled_trace":
            tracings += standard_tracings(name)[:21] + trace_rows(name, 5, 500, 500, 10, 14)  # outside the image
        else:
            tracings += standard_tracings(name)
    make_folder(root, clips, tracings=tracings, rows=rows)
    (root / "Videos" / "zero.avi").write_bytes(b"")
    data = (root / "Videos" / "cut.avi").read_bytes()
    (root / "Videos" / "cut.avi").write_bytes(data[: len(data) // 2])
    (root / "Videos" / "text.avi").write_text("not a video\n" * 30)
    expected = {
        ("missing", "missing_video"), ("zero", "unreadable"), ("cut", "unreadable"), ("text", "unreadable"),
        ("short", "too_short"), ("blank", "blank_frames"), ("noisy", "noisy_video"),
        ("smooth_noise", "noisy_video"), ("mismatch", "size_mismatch"), ("untraced", "no_tracings"),
        ("garbled_trace", "malformed_tracings"), ("multi", "multi_annotator"),
        ("incomplete", "incomplete_trace"), ("close", "ed_es_too_close"), ("equal", "ed_not_larger"),
        ("single", "ed_not_larger"), ("late", "malformed_tracings"),
    }
    return root, expected


def test_every_reason_is_found_and_nothing_else(problem_folder):
    root, expected = problem_folder
    report = check_dataset(root, workers=1)
    found = {(p.FileName, p.reason) for p in report.problems}
    assert found == expected
    assert {r for _, r in expected} == set(REASONS)
    assert len(report.problems) == len(found)  # one row per (clip, reason)
    assert report.videos == 19 and report.traced == 18
    assert report.usable == 2 and "good" not in report.problem_clips
    details = {(p.FileName, p.reason): p.detail for p in report.problems}
    assert "0 bytes" in details["zero", "unreadable"] and "truncated" in details["cut", "unreadable"]
    assert "34x64x64" in details["mismatch", "size_mismatch"] and "30x64x64" in details["mismatch", "size_mismatch"]
    assert "[40]" in details["late", "malformed_tracings"]
    assert "2 annotators" in details["multi", "multi_annotator"]
    assert "15 rows" in details["incomplete", "incomplete_trace"]
    assert report.by_reason()["unreadable"] == 3
    assert "noisy_video" in summarize(report) and "19 videos" in summarize(report)


def test_parallel_check_gives_the_same_report(problem_folder):
    root, _ = problem_folder
    assert check_dataset(root, workers=2).problems == check_dataset(root, workers=1).problems


def test_report_csv_and_json(problem_folder, tmp_path):
    root, expected = problem_folder
    report = check_dataset(root, workers=1)
    out = report.to_csv(tmp_path / "corrupted.csv")
    table = pd.read_csv(out)
    assert list(table.columns) == ["FileName", "reason"] and len(table) == len(expected)
    assert set(zip(table.FileName, table.reason)) == expected
    assert list(pd.read_csv(report.to_csv(tmp_path / "d.csv", details=True)).columns) == ["FileName", "reason",
                                                                                         "detail"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corrupted.csv", "d.csv"]  # no temp files
    data = json.loads(json.dumps(report.to_json()))
    assert data["videos"] == 19 and data["traced"] == 18 and data["usable"] == 2
    assert {(p["FileName"], p["reason"]) for p in data["problems"]} == expected


def test_synthetic_folder_ignores_filelist_sizes(tmp_path):
    clips = {"s0": beating_clip(N, S, 0), "s1": beating_clip(N, S, 1)[:8]}
    rows = [filelist_row(n, None, NumberOfFrames=192, FrameHeight=112, FrameWidth=112) for n in clips]
    report = check_dataset(make_folder(tmp_path, clips, rows=rows), workers=1)
    assert report.kind == "EchoNetSynthetic" and report.traced == 0
    assert [(p.FileName, p.reason) for p in report.problems] == [("s1", "too_short")]


def test_unusable_folders_raise(tmp_path):
    with pytest.raises(DatasetError, match="dataset folder not found"):
        check_dataset(tmp_path / "nope")
    root = make_folder(tmp_path / "a", {"a": beating_clip(N, S)})
    shutil.rmtree(root / "Videos")
    with pytest.raises(DatasetError, match="no Videos/ folder"):
        check_dataset(root)


def test_blank_rule_thresholds():
    clip = beating_clip(60, 32)
    for start, length, flagged in [(10, 4, False), (10, 5, True), (0, 5, True)]:
        c = clip.copy()
        c[start:start + length] = 128  # constant gray frames count as blank too
        assert any(r == "blank_frames" for r, _ in frame_problems(c)) is flagged
    scattered = clip.copy()
    scattered[::5] = 0  # 12 of 60 frames (20 %), never two in a row
    assert [r for r, _ in frame_problems(scattered)] == ["blank_frames"]
    assert frame_problems(clip[:10], CheckConfig(min_frames=10)) == []
    assert longest_run(np.array([0, 1, 1, 0, 1, 1, 1], bool)) == (3, 4)


def test_noise_rule_flags_stretches_not_single_frames():
    clip = beating_clip(60, 32)
    burst = clip.copy()
    burst[20:23] = _noise(3, 32, 1)  # a 3-frame glitch is not a noise clip
    assert frame_problems(burst) == []
    stretch = clip.copy()
    stretch[20:30] = _noise(10, 32, 2)
    assert [r for r, _ in frame_problems(stretch)] == ["noisy_video"]


def test_real_clip_is_clean_and_its_corruptions_are_caught(shared_fixtures):
    real, _ = read_video(shared_fixtures / "a4c_112x112_50fps.avi")
    assert frame_problems(real) == []
    assert frame_problems(real[::6]) == []  # ~8 fps: large motion between frames is still not noise
    rng = np.random.default_rng(0)
    cases = {
        "whole clip white noise": rng.integers(0, 256, real.shape).astype(np.uint8),
        "whole clip smooth speckle": _noise(len(real), 112, 5, blur=1.5),
        "long stretch of speckle": np.concatenate([real[:60], _noise(60, 112, 6), real[120:]]),
        "strong noise over the anatomy": np.clip(real + rng.normal(0, 70, real.shape), 0, 255).astype(np.uint8),
    }
    for label, clip in cases.items():
        assert "noisy_video" in [r for r, _ in frame_problems(clip)], label
    blank = real.copy()
    blank[50:56] = 0
    assert [r for r, _ in frame_problems(blank)] == ["blank_frames"]


def test_real_fixture_folder(shared_fixtures, tmp_path):
    # The real clip in an EchoNet folder with an honest FileList row and traces: no problem at all.
    root = tmp_path / "one"
    (root / "Videos").mkdir(parents=True)
    shutil.copy(shared_fixtures / "a4c_112x112_50fps.avi", root / "Videos" / "real.avi")
    pd.DataFrame([filelist_row("real", np.zeros((173, 112, 112)), split="TEST")]).to_csv(root / "FileList.csv",
                                                                                        index=False)
    pd.DataFrame(standard_tracings("real", ed=20, es=40, size=112),
                 columns=["FileName", "X1", "Y1", "X2", "Y2", "Frame"]).to_csv(root / "VolumeTracings.csv",
                                                                                index=False)
    report = check_dataset(root, workers=1)
    assert report.problems == [] and report.usable == 1
    assert check_video(root / "Videos" / "real.avi") == []


def test_real_filelist_reports_the_six_untraced(shared_fixtures, tmp_path):
    # The real FileList with tracings for all but the six large clips, and no video on disk.
    root = tmp_path / "echonet"
    (root / "Videos").mkdir(parents=True)
    shutil.copy(shared_fixtures / "echonet_dynamic_FileList.csv", root / "FileList.csv")
    table = pd.read_csv(root / "FileList.csv")
    traced = table.FileName[table.FrameHeight == 112]
    block = "".join(f"@.avi,{x1:.1f},{y1:.1f},{x2:.1f},{y2:.1f},{f}\n"
                    for _, x1, y1, x2, y2, f in standard_tracings("x", ed=2, es=12, size=112))
    (root / "VolumeTracings.csv").write_text("FileName,X1,Y1,X2,Y2,Frame\n" +
                                             "".join(block.replace("@", n) for n in traced))
    report = check_dataset(root, workers=1)
    assert report.videos == 10030 and report.traced == 10024
    untraced = [p.FileName for p in report.problems if p.reason == "no_tracings"]
    assert untraced == table.FileName.tolist()[-6:] and "0X5DD5283AC43CCDD1" in untraced
    assert report.by_reason() == {"missing_video": 10030, "no_tracings": 6}


@pytest.mark.parametrize("style", ["dynamic", "synthetic"])
def test_check_finds_exactly_the_phantom_corruptions(tmp_path, style):
    phantom = pytest.importorskip("echodfkd.data.phantom")
    root = phantom.generate_phantom(tmp_path / style, 8, style=style, seed=3, corrupt=0.5, size=64, workers=1,
                                    frames=48)
    truth = pd.read_csv(root / "GroundTruth" / "corrupted.csv")
    report = check_dataset(root, workers=1)
    assert {(p.FileName, p.reason) for p in report.problems} == set(zip(truth.FileName, truth.kind))
    assert len(truth) == 4


def test_interrupted_check_resumes_from_its_journal(problem_folder, tmp_path, monkeypatch, capsys):
    """A check killed part-way decodes only the clips it lacks on the rerun and ends with the same CSV."""
    import os

    import echodfkd.data.check as check_mod
    from echodfkd.cli import main

    src, _ = problem_folder
    root = tmp_path / "ds"
    shutil.copytree(src, root)
    full = tmp_path / "full.csv"
    assert main(["check", str(root), "--csv", str(full), "--workers", "1", "--details"]) == 0
    assert not (tmp_path / "full.csv.progress.jsonl").exists()  # removed once the CSV is written

    real, calls = check_mod.inspect_video, []

    def dying(name, *args, **kwargs):
        calls.append(name)
        if len(calls) == 8:
            raise KeyboardInterrupt  # Ctrl-C in the middle of the folder
        return real(name, *args, **kwargs)

    monkeypatch.setattr(check_mod, "inspect_video", dying)
    out, journal = tmp_path / "corrupted.csv", tmp_path / "corrupted.csv.progress.jsonl"
    assert main(["check", str(root), "--csv", str(out), "--workers", "1", "--details"]) == 130
    assert "rerun to resume" in capsys.readouterr().err
    done = [json.loads(line)["name"] for line in journal.read_text().splitlines()]
    assert not out.exists() and done == calls[:7]
    with open(journal, "a") as fh:
        fh.write('{"name": "good", "stamp"')  # a line cut short by the kill is ignored
    # One recorded clip changes on disk: it is decoded again rather than taken from the journal.
    video = root / "Videos" / f"{done[0]}.avi"
    t = video.stat().st_mtime_ns + 10**9
    os.utime(video, ns=(t, t))
    calls.clear()
    monkeypatch.setattr(check_mod, "inspect_video", lambda name, *a, **k: calls.append(name) or real(name, *a, **k))
    assert main(["check", str(root), "--csv", str(out), "--workers", "1", "--details"]) == 0
    assert "resuming, 6 of 19 clips already checked" in capsys.readouterr().err
    assert sorted(calls) == sorted(set(check_mod.open_dataset(root).names()) - set(done[1:]))
    assert out.read_text() == full.read_text() and not journal.exists()
