"""Tests of the procedural A4C phantom (echodfkd.data.phantom and `echodfkd phantom`)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from skimage.draw import polygon as sk_polygon

from echodfkd.data.phantom import KINDS, generate_phantom, make_clip, side_by_side, write_preview
from echodfkd.data.phantom.generate import FILELIST_COLUMNS, assign_splits
from echodfkd.data.phantom.raster import fill_polygons
from echodfkd.data.phantom.tracing import human_frame_offset
from echodfkd.errors import DatasetError
from echodfkd.io.video import read_video

SIZE, FRAMES, VIDEOS, SEED = 64, 40, 8, 11
DYN = dict(videos=VIDEOS, style="dynamic", seed=SEED, corrupt=0.5, size=SIZE, frames=FRAMES)


@pytest.fixture(scope="module")
def dyn(tmp_path_factory) -> Path:
    """8 dynamic clips of 40 frames at 64x64, half corrupted (one of each kind), made by 2 workers."""
    return generate_phantom(tmp_path_factory.mktemp("dyn") / "ph", workers=2, **DYN)


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _gt(root: Path, name: str) -> dict:
    with np.load(root / "GroundTruth" / f"{name}.npz") as z:
        return {k: z[k] for k in z.files}


def _traces(root: Path) -> dict[str, dict[int, np.ndarray]]:
    """FileName -> frame -> rows (n, 4) from VolumeTracings.csv."""
    out: dict[str, dict[int, list]] = {}
    for r in _rows(root / "VolumeTracings.csv"):
        out.setdefault(r["FileName"][:-4], {}).setdefault(int(r["Frame"]), []).append(
            [float(r[c]) for c in ("X1", "Y1", "X2", "Y2")])
    return {n: {f: np.array(v) for f, v in d.items()} for n, d in out.items()}


def _echonet_mask(rows: np.ndarray, size: int) -> np.ndarray:
    """EchoNet's rule, written out independently of the package: drop row 0, X1 then reversed X2."""
    x = np.rint(np.concatenate([rows[1:, 0], rows[1:, 2][::-1]])).astype(int)
    y = np.rint(np.concatenate([rows[1:, 1], rows[1:, 3][::-1]])).astype(int)
    mask = np.zeros((size, size), bool)
    rr, cc = sk_polygon(y, x, (size, size))
    mask[rr, cc] = True
    return mask


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def _corrupted(root: Path) -> dict[str, str]:
    return {r["FileName"]: r["kind"] for r in _rows(root / "GroundTruth" / "corrupted.csv")}


def test_layout_and_filelist(dyn):
    assert (dyn / "FileList.csv").read_text().splitlines()[0] == ",".join(FILELIST_COLUMNS)
    assert (dyn / "VolumeTracings.csv").read_text().splitlines()[0] == "FileName,X1,Y1,X2,Y2,Frame"
    rows = _rows(dyn / "FileList.csv")
    assert [r["FileName"] for r in rows] == [f"PH_dyn_{i:06d}" for i in range(VIDEOS)]
    assert {r["Split"] for r in rows} == {"TRAIN", "VAL", "TEST"}
    for r in rows:
        frames, fps = read_video(dyn / "Videos" / f"{r['FileName']}.avi")
        assert frames.shape == (FRAMES, SIZE, SIZE) == (int(r["NumberOfFrames"]), int(r["FrameHeight"]),
                                                       int(r["FrameWidth"]))
        assert float(r["FPS"]) == fps and 18 <= fps <= 138
        gt = _gt(dyn, r["FileName"])
        assert gt["lv"].shape == gt["rv"].shape == frames.shape and gt["lv"].dtype == bool
        assert float(gt["fps"]) == fps and abs(float(gt["ef"]) - float(r["EF"])) < 1e-6
        ef, esv, edv = float(r["EF"]), float(r["ESV"]), float(r["EDV"])
        assert 5 < ef < 90 and 0 < esv < edv < 400
        assert abs(100 * (edv - esv) / edv - ef) < 1e-4  # EF is the traced beat's area-length EF
    assert set(_corrupted(dyn).values()) == set(KINDS)


def test_check_flags_exactly_the_corrupted_clips(dyn):
    check = pytest.importorskip("echodfkd.data.check")
    report = check.check_dataset(dyn, workers=1)
    found = {(p.FileName, p.reason) for p in report.problems}
    assert found == set(_corrupted(dyn).items()), report.problems


def test_traces_rasterise_to_the_true_mask_at_their_frame(dyn):
    bad = _corrupted(dyn)
    traces = _traces(dyn)
    assert set(traces) == {r["FileName"] for r in _rows(dyn / "FileList.csv")}
    for name, frames in traces.items():
        gt = _gt(dyn, name)
        assert len(frames) == 2
        for frame, rows in frames.items():
            annotators = len(rows) // 21
            assert len(rows) == 21 * annotators and annotators == (2 if bad.get(name) == "multi_annotator"
                                                                   and annotators > 1 else 1)
            assert rows.min() >= 0 and rows.max() < SIZE  # coordinates in the clip's own pixel space
            for k in range(annotators):
                d = _dice(_echonet_mask(rows[21 * k:21 * (k + 1)], SIZE), gt["lv"][frame])
                assert d >= 0.9, (name, frame, k, d)
    assert sum(len(r) == 42 for f in traces.values() for r in f.values()) == 1


def test_traced_frames_are_noisy_but_ordered(dyn):
    bad = _corrupted(dyn)
    for name, frames in _traces(dyn).items():
        gt = _gt(dyn, name)
        area = gt["lv"].sum(axis=(1, 2))
        ed_t, es_t = sorted(frames, key=lambda f: -area[f])
        if bad.get(name) == "ed_es_too_close":
            assert abs(ed_t - es_t) <= 1
            continue
        assert abs(ed_t - es_t) >= 2 and area[ed_t] > area[es_t]
        # Each traced frame is near a true one of its phase.
        assert np.abs(gt["ed"] - ed_t).min() <= 12 and np.abs(gt["es"] - es_t).min() <= 12


def test_lv_area_peaks_at_true_ed_and_troughs_at_true_es(dyn):
    for r in _rows(dyn / "FileList.csv"):
        gt = _gt(dyn, r["FileName"])
        area = gt["lv"].sum(axis=(1, 2)).astype(float)
        ed, es = gt["ed"], gt["es"]
        assert len(ed) >= 1 and len(es) >= 1 and gt["rv"].any(axis=(1, 2)).all()
        events = sorted([(int(f), "ED") for f in ed] + [(int(f), "ES") for f in es])
        assert all(a[1] != b[1] for a, b in zip(events, events[1:]))  # phases alternate
        bounds = [-1] + [f for f, _ in events] + [len(area)]
        for i, (f, phase) in enumerate(events):
            window = area[bounds[i] + 1:bounds[i + 2]]  # between the neighbouring events
            assert area[f] == (window.max() if phase == "ED" else window.min()), (r["FileName"], f, phase)
        assert area[ed].min() > area[es].max()  # a real contraction, not a flat curve
        assert (area[ed].mean() - area[es].mean()) / area[ed].mean() > 0.03  # EF 10 % still shrinks


def test_same_seed_same_dataset_serial_and_parallel(dyn, tmp_path):
    serial = generate_phantom(tmp_path / "serial", workers=1, **DYN)
    for table in ("FileList.csv", "VolumeTracings.csv", "GroundTruth/corrupted.csv"):
        assert (serial / table).read_bytes() == (dyn / table).read_bytes()
    for r in _rows(dyn / "FileList.csv"):
        a, b = _gt(dyn, r["FileName"]), _gt(serial, r["FileName"])
        for key in ("lv", "rv", "ed", "es", "ef"):
            assert np.array_equal(a[key], b[key])
        assert np.array_equal(read_video(dyn / "Videos" / f"{r['FileName']}.avi")[0],
                              read_video(serial / "Videos" / f"{r['FileName']}.avi")[0])
    other = generate_phantom(tmp_path / "other", workers=1, **{**DYN, "seed": SEED + 1, "videos": 2})
    assert (other / "FileList.csv").read_bytes() != (dyn / "FileList.csv").read_bytes()


def test_rerun_resumes_and_refuses_other_settings(tmp_path):
    root = generate_phantom(tmp_path / "ph", videos=3, size=SIZE, frames=FRAMES, seed=3, workers=1)
    table = (root / "FileList.csv").read_bytes()
    kept = (root / "Videos" / "PH_dyn_000000.avi").stat().st_mtime_ns
    (root / "GroundTruth" / "PH_dyn_000001.json").unlink()  # as if interrupted mid-clip
    (root / "Videos" / "PH_dyn_000001.avi").unlink()
    generate_phantom(tmp_path / "ph", videos=3, size=SIZE, frames=FRAMES, seed=3, workers=1)
    assert (root / "FileList.csv").read_bytes() == table
    assert (root / "Videos" / "PH_dyn_000000.avi").stat().st_mtime_ns == kept  # finished clip skipped
    assert (root / "Videos" / "PH_dyn_000001.avi").exists()
    assert not list(root.rglob("*.tmp*"))
    with pytest.raises(DatasetError, match="other settings"):
        generate_phantom(tmp_path / "ph", videos=3, size=SIZE, frames=FRAMES, seed=4, workers=1)


def test_synthetic_style(tmp_path):
    root = generate_phantom(tmp_path / "syn", videos=2, style="synthetic", seed=5, size=SIZE, workers=1,
                            corrupt=0.5)
    assert not (root / "VolumeTracings.csv").exists()
    rows = _rows(root / "FileList.csv")
    for r in rows:
        assert r["FileName"].startswith("PH_syn_") and r["Split"] in {"TRAIN", "VAL", "TEST"}
        assert int(r["FPS"]) == 32 and int(r["NumberOfFrames"]) == 192  # EchoNet-Synthetic defaults
        assert r["EF"].isdigit() and 10 <= int(r["EF"]) <= 90
        assert float(r["ESV"]) == float(r["EDV"]) == 0.0
        frames, fps = read_video(root / "Videos" / f"{r['FileName']}.avi")
        assert frames.shape == (192, SIZE, SIZE) and fps == 32
    assert set(_corrupted(root).values()) <= {"blank_frames", "noisy_video"}
    from echodfkd.data import open_dataset

    assert not getattr(open_dataset(root), "has_tracings", True)


def test_synthetic_looks_different_from_dynamic():
    def grain(v: np.ndarray) -> float:  # pixel-to-pixel roughness inside the bright tissue, relative to it
        x = v.astype(float)
        d = np.abs(np.diff(x, axis=2))
        bright = x[:, :, 1:] > 60
        return float(d[bright].mean() / x[:, :, 1:][bright].mean())

    # The synthetic style is another scanner: a more compounded, smoother grain (on average over clips).
    dyn = np.mean([grain(make_clip(1, i, "dynamic", 112, frames=48, fps=50).frames) for i in range(6)])
    syn = np.mean([grain(make_clip(1, i, "synthetic", 112, frames=48).frames) for i in range(6)])
    assert syn < 0.85 * dyn


def test_preview_and_cli(dyn, tmp_path):
    from echodfkd.cli import main

    png = write_preview(dyn, tmp_path / "preview.png", clips=3)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    out = tmp_path / "cli"
    assert main(["phantom", "--out", str(out), "--videos", "2", "--size", "64", "--frames", "40", "--workers", "1",
                 "--preview", str(tmp_path / "cli.png"), "--seed", "9"]) == 0
    assert (tmp_path / "cli.png").stat().st_size > 1000 and len(_rows(out / "FileList.csv")) == 2
    assert main(["phantom", "--out", str(tmp_path / "bad"), "--videos", "0"]) == 2  # refused by the parser
    assert main(["phantom", "--out", str(tmp_path / "bad"), "--frames", "20", "--fps", "50"]) == 2
    assert not (tmp_path / "bad").exists()


def test_looks_like_the_real_clip(shared_fixtures, tmp_path):
    real, _ = read_video(shared_fixtures / "a4c_112x112_50fps.avi")
    clips = [make_clip(2, i, "dynamic", 112, frames=48, fps=50).frames for i in range(4)]
    side_by_side(tmp_path / "phantom_vs_real.png", [clips[0][0], clips[1][0], real[0]],
                 ["phantom", "phantom", "real A4C"])
    assert (tmp_path / "phantom_vs_real.png").exists()
    ph = np.concatenate(clips)
    # Same grey-level make-up: mostly black (outside the fan, blood), bright speckled tissue.
    assert abs((ph < 10).mean() - (real < 10).mean()) < 0.15
    assert 0.5 < ph.mean() / real.mean() < 1.8
    assert 0.6 < np.percentile(ph, 99) / np.percentile(real, 99) < 1.3
    # The fan apex is at the top centre and the corners outside the fan are black.
    for v in (ph, real):
        assert v[:, :8, :8].max() < 20 and v[:, :8, -8:].max() < 60 and v[:, 10:20, 50:62].mean() > 20


def test_rasteriser_matches_skimage():
    rng = np.random.default_rng(0)
    theta = np.linspace(0, 2 * np.pi, 40, endpoint=False)
    polys = np.stack([np.stack([30 + 25 * np.cos(theta) * rng.uniform(0.4, 1) + rng.normal(0, 2, 40),
                                35 + 28 * np.sin(theta) + rng.normal(0, 2, 40)], -1) for _ in range(20)])
    polys[0] -= 40  # partly outside the image
    masks = fill_polygons(polys, 64, 64)
    for poly, mask in zip(polys, masks):
        ref = np.zeros((64, 64), bool)
        rr, cc = sk_polygon(poly[:, 1], poly[:, 0], (64, 64))
        ref[rr, cc] = True
        assert np.array_equal(mask, ref)


def test_frame_label_noise_statistics():
    rng = np.random.default_rng(0)
    ed = np.array([human_frame_offset(rng, "ED", 50) for _ in range(20000)])
    es = np.array([human_frame_offset(rng, "ES", 50) for _ in range(20000)])
    assert 2.1 < np.abs(ed).mean() < 2.7 and abs(ed.mean()) < 0.15
    assert 1.8 < np.abs(es).mean() < 2.3 and es.mean() < -0.6  # ES is picked early


def test_splits_and_bad_arguments(tmp_path):
    assert sorted(set(assign_splits(3, 0))) == ["TEST", "TRAIN", "VAL"]
    big = assign_splits(1000, 0)
    assert abs(big.count("TRAIN") - 744) <= 2 and abs(big.count("VAL") - 128) <= 2
    assert assign_splits(50, 1) == assign_splits(50, 1)
    for kwargs in ({"style": "camus"}, {"videos": 0}, {"corrupt": 1.5}, {"size": 8}):
        with pytest.raises(DatasetError):
            generate_phantom(tmp_path / "x", **{"videos": 1, **kwargs})
    json.loads(json.dumps(KINDS))  # the kind names are plain strings (they land in corrupted.csv)
