"""`echodfkd convert` on folders (resume, per-file lines, names, tables) and `predict` on DICOM / any-size
video directly: the same masks as `convert` then `predict`, given back at the source size."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest

pytest.importorskip("pydicom")

from dicom_cines import PATIENT, draw_cine, grey, write_dicom  # noqa: E402

from echodfkd.cli import main  # noqa: E402
from echodfkd.data import open_dataset  # noqa: E402
from echodfkd.data.convert import prepare_clip  # noqa: E402
from echodfkd.data.phantom import make_clip  # noqa: E402
from echodfkd.data.sector import find_sector, overlay, to_source  # noqa: E402
from echodfkd.io.video import read_video, write_video  # noqa: E402
from tiny_models import fitted_student  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")
REAL_582 = "a4c_582x582_30fps_ecg.mp4"


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A folder of good and bad sources: 3 DICOM variants (one in a sub-folder), a single-frame DICOM and a
    video with nothing moving."""
    root = tmp_path_factory.mktemp("inputs")
    cine = draw_cine(frames=10)
    write_dicom(root / "mono.dcm", grey(cine))
    (root / "sub").mkdir()
    write_dicom(root / "sub" / "IM0001", cine.frames, "RGB")  # no suffix: found by its DICM marker
    write_dicom(root / "jpeg.dcm", cine.frames, "YBR_FULL_422", jpeg=True, fps_tags={"CineRate": 25})
    write_dicom(root / "still.dcm", grey(cine)[:1])
    write_video(root / "static.avi", np.repeat(grey(cine)[:1], 8, axis=0), 30)
    return root


def test_folder_conversion_resume_and_bad_files(inputs, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["convert", str(inputs), "--out", str(out), "--split", "VAL"]) == 1  # some failed
    cap = capsys.readouterr()
    bad = [line for line in cap.err.splitlines() if line.startswith("skipped:")]
    assert len(bad) == 2 and "Traceback" not in cap.err
    assert any("still.dcm" in b and "single-frame" in b for b in bad)
    assert any("static.avi" in b and "no imaging sector found" in b for b in bad)
    assert "3 converted, 2 failed" in cap.out
    table = _rows(out / "conversion.csv")
    assert len(table) == 5 and sorted(r["Status"] for r in table) == ["failed"] * 2 + ["ok"] * 3
    ok = [r for r in table if r["Status"] == "ok"]
    assert {r["FPSSource"].split()[0] for r in ok} == {"FrameTime", "CineRate"}
    for r in ok:
        assert r["FileName"].startswith("0X") and len(r["FileName"]) == 18  # hashed, EchoNet's style
        assert int(r["CropSide"]) > 0 and r["Fan"] == "1" and float(r["Radius"]) > 100
    filelist = _rows(out / "FileList.csv")
    assert list(filelist[0]) == ["FileName", "EF", "ESV", "EDV", "FrameHeight", "FrameWidth", "FPS",
                                 "NumberOfFrames", "Split"]
    assert all(r["EF"] == r["ESV"] == r["EDV"] == "" and r["Split"] == "VAL" for r in filelist)
    ds = open_dataset(out)  # the result is a dataset the other commands read
    assert sorted(ds.names("VAL")) == sorted(r["FileName"] for r in ok)
    for name in ds.names():
        frames, fps = ds.video(name)
        assert frames.shape == (10, 112, 112) and fps > 0
    before = {p.name: p.stat().st_mtime_ns for p in (out / "Videos").iterdir()}

    assert main(["convert", str(inputs), "--out", str(out), "--split", "VAL"]) == 1  # rerun: resumes
    cap = capsys.readouterr()
    assert "0 converted, 3 already done, 2 failed" in cap.out
    assert {p.name: p.stat().st_mtime_ns for p in (out / "Videos").iterdir()} == before


def test_keep_names_and_duplicates(inputs, tmp_path, capsys):
    out = tmp_path / "out"
    first, copy = tmp_path / "first.dcm", tmp_path / "copy.dcm"
    first.write_bytes((inputs / "mono.dcm").read_bytes())
    copy.write_bytes(first.read_bytes())
    assert main(["convert", str(first), str(copy), "--out", str(out)]) == 0
    assert "has the same contents as" in capsys.readouterr().out
    assert sorted(r["Status"] for r in _rows(out / "conversion.csv")) == ["duplicate", "ok"]
    assert len(_rows(out / "FileList.csv")) == 1
    moved = tmp_path / "moved"
    moved.mkdir()
    first.rename(moved / first.name)  # the input moves: a rerun knows it by its contents
    assert main(["convert", str(moved / first.name), "--out", str(out)]) == 0
    assert "already converted (from" in capsys.readouterr().out
    assert str(moved / first.name) in {r["Source"] for r in _rows(out / "conversion.csv") if r["Status"] == "ok"}

    named = tmp_path / "named"
    (tmp_path / "b").mkdir()
    other = write_dicom(tmp_path / "b" / "mono.dcm", grey(draw_cine(frames=6, seed=1)))  # same name, new file
    assert main(["convert", str(inputs / "mono.dcm"), str(other), "--out", str(named), "--keep-names"]) == 0
    names = sorted(r["FileName"] for r in _rows(named / "FileList.csv"))
    assert names[0] == "mono" and names[1].startswith("mono_") and len(names[1]) == 11


def test_mjpeg_codec(inputs, tmp_path):
    out = tmp_path / "out"
    assert main(["convert", str(inputs / "mono.dcm"), "--out", str(out), "--codec", "mjpeg"]) == 0
    avi = next((out / "Videos").glob("*.avi"))
    cap = cv2.VideoCapture(str(avi))
    fourcc = int(cap.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode()
    cap.release()
    assert fourcc == "MJPG" and read_video(avi)[0].shape == (10, 112, 112)


def test_fps_needed_when_the_file_gives_none(tmp_path, capsys):
    src = write_dicom(tmp_path / "nofps.dcm", grey(draw_cine(frames=6)), fps_tags={})
    assert main(["convert", str(src), "--out", str(tmp_path / "a")]) == 2
    assert "pass --fps" in capsys.readouterr().err
    assert main(["convert", str(src), "--out", str(tmp_path / "b"), "--fps", "40"]) == 0
    row = _rows(tmp_path / "b" / "conversion.csv")[0]
    assert row["FPS"] == "40" and row["FPSSource"] == "--fps"


def test_bad_output_and_arguments(inputs, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main(["convert", str(inputs / "mono.dcm"), "--out", str(blocker)]) == 2
    assert "exists and is a file" in capsys.readouterr().err
    assert main(["convert", str(tmp_path / "missing.dcm"), "--out", str(tmp_path / "o")]) == 2
    assert "not found" in capsys.readouterr().err
    assert main(["convert", str(inputs / "mono.dcm"), "--out", str(tmp_path / "o"), "--fps", "-3"]) == 2


# ---------------------------------------------------------------- predict on the sources directly
@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A tiny student trained for a few seconds on 64-px phantom frames (so its masks follow the LV)."""
    return fitted_student(tmp_path_factory.mktemp("trained") / "run", 64, steps=30)


def _scanner_cine(tmp_path):
    """A beating phantom clip shown at 2x inside a larger scanner screen, with text and a moving ECG."""
    clip = make_clip(seed=5, index=0, size=112, frames=30)
    t, h, w = len(clip.frames), 260, 300
    screen = np.zeros((t, h, w), np.uint8)
    big = np.stack([cv2.resize(f, (224, 224), interpolation=cv2.INTER_LINEAR) for f in clip.frames])
    screen[:, 14:238, 38:262] = big
    for i in range(t):
        cv2.putText(screen[i], "DOE^JOHN", (2, 10), cv2.FONT_HERSHEY_PLAIN, 0.7, 255, 1)
        x = (10 + 9 * i) % (w - 20)
        cv2.line(screen[i], (4, 250), (w - 4, 250), 160, 1)
        cv2.line(screen[i], (x, 250), (x + 3, 243), 255, 1)
    return write_dicom(tmp_path / "scan.dcm", screen, fps_tags={"FrameTime": "20"})


def _same_masks_both_ways(source, trained_run, tmp_path):
    """predict SOURCE directly, and convert SOURCE then predict the dataset: the masks and areas agree."""
    direct, conv, via = tmp_path / "direct", tmp_path / "conv", tmp_path / "via"
    assert main(["predict", str(source), "--student", str(trained_run), "--out", str(direct), "--overlay"]) == 0
    assert main(["convert", str(source), "--out", str(conv)]) == 0
    assert main(["predict", str(conv), "--student", str(trained_run), "--out", str(via)]) == 0
    name = _rows(conv / "FileList.csv")[0]["FileName"]
    with np.load(direct / f"{source.stem}.npz") as a, np.load(via / f"{name}.npz") as b:
        d, v, info = dict(a), dict(b), json.loads(str(a["info"]))
    src_h, src_w = info["conversion"]["source_size"]
    assert d["masks"].shape[1:] == (src_h, src_w)  # given back at the source size
    shown, _ = read_video(direct / "overlays" / f"{source.stem}.avi")
    assert shown.shape == d["masks"].shape  # the overlay is drawn on the source frames
    assert d["masks_converted"].shape == v["masks"].shape == (len(d["masks"]), 112, 112)
    # The converted folder's AVIs are lossless, so the student sees the same frames either way.
    assert np.array_equal(d["masks_converted"], v["masks"])
    assert np.array_equal(d["areas_converted"], v["areas"])
    # Source-size masks are the converted ones mapped through the crop box recorded in conversion.csv.
    g = info["conversion"]["geometry"]
    row = _rows(conv / "conversion.csv")[0]
    assert [int(row[k]) for k in ("CropX", "CropY", "CropSide")] == [g["crop_x"], g["crop_y"], g["crop_side"]]
    scale2 = (g["crop_side"] / 112) ** 2
    ratio = d["areas"].sum() / max(1, d["areas_converted"].sum())
    assert ratio == pytest.approx(scale2, rel=0.1)
    return d


def test_predict_dicom_directly_equals_convert_then_predict(tmp_path, trained_run):
    d = _same_masks_both_ways(_scanner_cine(tmp_path), trained_run, tmp_path)
    assert (d["masks_converted"] >= 128).any()  # the student did find something to compare
    for p in tmp_path.rglob("*"):  # and no patient field reached the predictions
        if p.is_file() and p.suffix != ".dcm":
            assert PATIENT["PatientID"].encode() not in p.read_bytes()


def test_to_source_inverts_the_crop(tmp_path):
    src = _scanner_cine(tmp_path)
    clip = prepare_clip(src, keep_source=True)
    sector_out = to_source(clip.frames > 0, clip.geometry)  # the converted frames' content, mapped back
    inside = clip.sector[None].repeat(len(clip.frames), 0)
    assert (sector_out & ~inside).mean() < 0.01  # nothing lands outside the sector


@pytest.fixture
def real_582(shared_fixtures):
    path = shared_fixtures / REAL_582
    if not path.is_file():
        pytest.skip(f"{REAL_582} is absent")
    return path


def test_real_582_sector(real_582, tmp_path):
    frames, _ = read_video(real_582)
    mask, g = find_sector(frames)
    h, w = frames.shape[1:]
    # The ECG trace runs along the bottom rows; at the outer quarters the sector's arc is far above it.
    changing = frames.astype(np.float32).std(0) > 3
    ecg = np.zeros_like(mask)
    ecg[int(0.93 * h):, : w // 4] = ecg[int(0.93 * h):, -(w // 4):] = True
    assert (changing & ecg).sum() > 100 and not (mask & ecg).any()
    # The focus marker right of the sector moves too, and is left out; nothing lies below the arc.
    ys, xs = np.nonzero(mask)
    assert np.hypot(xs - g.apex_x, ys - g.apex_y).max() <= g.radius * 1.02
    assert g.fan and abs(g.apex_x - w / 2) < 0.05 * w and g.angle_left < -30 and g.angle_right > 30
    cv2.imwrite(str(tmp_path / "overlay.png"), overlay(frames.max(0), mask, g))
    assert (tmp_path / "overlay.png").stat().st_size > 0


def test_real_582_framed_like_echonet_dev(real_582, shared_fixtures):
    """The converted clip's sector sits in the 112-px frame as in the real EchoNet clips."""
    def layout(frames):  # first imaged row, and the row where the sector first touches a side
        m = find_sector(frames)[0]
        rows = np.flatnonzero(m.any(1))
        sides = np.flatnonzero(m[:, 0] | m[:, -1])
        return rows[0], sides[0] if len(sides) else len(m)

    echonet = [layout(read_video(p)[0]) for p in sorted((shared_fixtures / "echonet_dev" / "Videos").glob("*.avi"))]
    ours = layout(prepare_clip(real_582).frames)
    for k in range(2):
        lo, hi = min(e[k] for e in echonet), max(e[k] for e in echonet)
        assert lo - 6 <= ours[k] <= hi + 6, (k, ours, echonet)


def test_real_582_predict_directly_equals_convert_then_predict(real_582, trained_run, tmp_path):
    _same_masks_both_ways(real_582, trained_run, tmp_path)


def test_predict_convert_modes_and_folders(inputs, trained_run, tmp_path, capsys):
    static = inputs / "static.avi"
    # auto: a video with no sector is used whole, with a note; on: it is refused in one line.
    assert main(["predict", str(static), "--student", str(trained_run), "--out", str(tmp_path / "a")]) == 0
    with np.load(tmp_path / "a" / "static.npz") as z:
        info = json.loads(str(z["info"]))
        assert z["masks"].shape[1:] == (180, 240) and "masks_converted" not in z.files
    assert not info["conversion"]["converted"] and "no imaging sector" in info["conversion"]["notes"][0]
    capsys.readouterr()
    assert main(["predict", str(static), "--student", str(trained_run), "--out", str(tmp_path / "b"),
                 "--convert", "on"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no imaging sector found" in err
    # A folder mixing DICOM and an EchoNet-sized AVI: the DICOM is framed, the AVI used as it is.
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "scan.dcm").write_bytes((inputs / "mono.dcm").read_bytes())
    write_video(folder / "echonet.avi", make_clip(seed=1, index=0, size=112, frames=40).frames, 50)
    assert main(["predict", str(folder), "--student", str(trained_run), "--out", str(tmp_path / "c")]) == 0
    with np.load(tmp_path / "c" / "scan.npz") as z:
        assert z["masks"].shape[1:] == (180, 240) and z["masks_converted"].shape[1:] == (112, 112)
    with np.load(tmp_path / "c" / "echonet.npz") as z:
        assert z["masks"].shape[1:] == (112, 112) and "conversion" not in json.loads(str(z["info"]))
    # off: the DICOM is only decoded, its whole frame resized by the predictor.
    assert main(["predict", str(folder / "scan.dcm"), "--student", str(trained_run), "--out", str(tmp_path / "d"),
                 "--convert", "off"]) == 0
    with np.load(tmp_path / "d" / "scan.npz") as z:
        assert z["masks"].shape[1:] == (180, 240) and "masks_converted" not in z.files


def test_predict_refuses_bad_dicom_in_one_line(inputs, trained_run, tmp_path, capsys):
    assert main(["predict", str(inputs / "still.dcm"), "--student", str(trained_run), "--out", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "single-frame" in err and "Traceback" not in err


def test_viewer_takes_dicom_and_shows_the_sector(tmp_path):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient
    from viewer_support import dark_cavity_student

    from echodfkd.viewer.app import create_app

    run = dark_cavity_student(tmp_path / "run")
    src = _scanner_cine(tmp_path)
    app = create_app(run, examples_cache=tmp_path / "cache")
    with TestClient(app) as client:
        r = client.post("/api/analyze", files={"file": ("scan.dcm", src.read_bytes(), "application/dicom")})
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["width"] == out["height"] == 112 and out["frames"] == 30
        conv = out["conversion"]
        assert conv["source_size"] == [260, 300] and conv["preview_png"]
        assert len(conv["areas_source"]) == len(out["areas"])
        scale = conv["geometry"]["crop_side"] / 112
        assert conv["areas_source"][3] == pytest.approx(out["areas"][3] * scale ** 2, abs=0.1)
        assert any("sector found" in w for w in out["warnings"])
        assert PATIENT["PatientName"] not in r.text
        ct = write_dicom(tmp_path / "ct.dcm", grey(draw_cine(frames=4)), modality="CT")
        r = client.post("/api/analyze", files={"file": ("ct.dcm", ct.read_bytes(), "application/dicom")})
        assert r.status_code == 415 and "modality CT" in r.json()["error"]
        assert str(tmp_path) not in r.json()["error"]


def test_echonet_clips_convert_to_themselves(shared_fixtures, tmp_path):
    videos = shared_fixtures / "echonet_dev" / "Videos"
    out = tmp_path / "out"
    assert main(["convert", str(videos), "--out", str(out)]) == 0
    for row in _rows(out / "conversion.csv"):
        source, _ = read_video(row["Source"])
        converted, _ = read_video(out / "Videos" / f"{row['FileName']}.avi")
        assert np.array_equal(source, converted)  # kept whole; FFV1 is lossless
        assert (row["CropX"], row["CropY"], row["CropSide"]) == ("0", "0", "112")
