"""DICOM cines written at test time with pydicom: decoding (uncompressed MONOCHROME2/RGB, JPEG Baseline
YBR_FULL_422), the sector found, the frame rate from the tags, and every refusal as one line."""

from __future__ import annotations

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")

from dicom_cines import PATIENT, Cine, draw_cine, grey, iou, write_dicom  # noqa: E402

from echodfkd.cli import main  # noqa: E402
from echodfkd.data.convert import prepare_clip  # noqa: E402
from echodfkd.data.dicom import frame_rate, is_dicom, read_dicom  # noqa: E402
from echodfkd.data.sector import frame_clip  # noqa: E402
from echodfkd.errors import VideoError  # noqa: E402

VARIANTS = {  # name -> (photometric, JPEG?, colour frames?, extra write_dicom arguments)
    "monochrome2": ("MONOCHROME2", False, False, {}),
    "rgb": ("RGB", False, True, {}),
    "jpeg_ybr_full_422": ("YBR_FULL_422", True, True, {}),
    "rgb_planes": ("RGB", False, True, {"planar": 1}),
    "ybr_full": ("YBR_FULL", False, True, {}),
    "rle_rgb": ("RGB", False, True, {"rle": True}),
    "rle_monochrome2": ("MONOCHROME2", False, False, {"rle": True}),
}


@pytest.fixture(scope="module")
def cine() -> Cine:
    return draw_cine()


def _write(tmp_path, cine: Cine, variant: str, **kw):
    photometric, jpeg, colour, extra = VARIANTS[variant]
    frames = cine.frames if colour else grey(cine)
    return write_dicom(tmp_path / f"{variant}.dcm", frames, photometric, jpeg, **extra, **kw)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_decode_and_sector(tmp_path, cine, variant):
    path = _write(tmp_path, cine, variant)
    assert is_dicom(path)
    raw = read_dicom(path)
    assert raw.frames.shape[0] == len(cine.frames) and raw.frames.shape[1:3] == cine.fan.shape  # not transposed
    expected = "RLE" if variant.startswith("rle") else "JPEG Baseline" if "jpeg" in variant else "Explicit VR"
    assert raw.transfer_syntax.startswith(expected) and raw.photometric == VARIANTS[variant][0]
    clip = prepare_clip(path, keep_source=True)
    # Colour converted correctly (YBR -> RGB -> grey): the grey levels match what was drawn.
    assert np.abs(clip.source.astype(int) - grey(cine)).mean() < 3.0
    assert iou(clip.sector, cine.fan) >= 0.95
    for drawn in (cine.text, cine.ecg, cine.bar):  # no text, ECG or colour-bar pixel is inside the sector
        assert drawn.any() and not (clip.sector & drawn).any()
    assert clip.frames.shape == (len(cine.frames), 112, 112) and clip.frames.dtype == np.uint8
    assert clip.fps == pytest.approx(1000 / 33.333) and clip.fps_source.startswith("FrameTime")
    # Text, ECG and bar are blanked: removing them from the source does not change a single output pixel.
    if variant not in ("jpeg_ybr_full_422", "ybr_full"):  # (JPEG blocks / YBR rounding shift a few levels)
        clean = grey(cine) * cine.fan.astype(np.uint8)
        assert np.array_equal(frame_clip(clean, clip.sector, clip.geometry), clip.frames)


def test_deep_and_inverted_grey(tmp_path, cine):
    g = grey(cine)
    deep = read_dicom(write_dicom(tmp_path / "deep.dcm", g, bits=16))
    assert deep.frames.dtype == np.uint8 and np.abs(deep.frames.astype(int) - g).max() <= 1  # min-max rescaled
    inverted = read_dicom(write_dicom(tmp_path / "inv.dcm", 255 - g, "MONOCHROME1"))
    assert np.array_equal(inverted.frames, g)  # MONOCHROME1: 0 is white


def test_sector_framed_like_echonet(tmp_path, cine):
    from echodfkd.data import sector

    clip = prepare_clip(_write(tmp_path, cine, "monochrome2"))
    g = clip.geometry
    assert g.fan and g.apex_x == pytest.approx(120, abs=1.5) and g.apex_y == pytest.approx(14, abs=1.5)
    assert g.radius == pytest.approx(150, abs=2)
    # In the 112-px frame: apex where EchoNet has it, the side equal to the imaged depth.
    assert (g.apex_x - g.crop_x) / g.crop_side == pytest.approx(sector.APEX_X, abs=0.01)
    assert g.crop_side == pytest.approx(sector.SIDE_PER_DEPTH * (g.apex_y + g.radius - 14), abs=2)
    rows = np.flatnonzero((clip.frames > 0).any(axis=(0, 2)))
    assert rows[0] == pytest.approx(sector.TOP_MARGIN * 112, abs=2)  # first imaged row
    assert g.angle_left == pytest.approx(-40, abs=2) and g.angle_right == pytest.approx(40, abs=2)


def test_quiet_near_field_is_kept(tmp_path):
    quiet = draw_cine(quiet_near=30)
    clip = prepare_clip(write_dicom(tmp_path / "quiet.dcm", grey(quiet)), keep_source=True)
    assert iou(clip.sector, quiet.fan) >= 0.95
    assert clip.geometry.apex_y == pytest.approx(14, abs=2)
    assert np.flatnonzero(clip.sector.any(axis=1))[0] <= 16  # the still wedge under the apex is not cut


@pytest.mark.parametrize("tags, fps, source", [
    ({"FrameTime": "20"}, 50.0, "FrameTime"),
    ({"CineRate": 30}, 30.0, "CineRate"),
    ({"RecommendedDisplayFrameRate": 25}, 25.0, "RecommendedDisplayFrameRate"),
    ({"FrameTime": "40", "CineRate": 30, "RecommendedDisplayFrameRate": 20}, 25.0, "FrameTime"),
    ({"CineRate": 30, "RecommendedDisplayFrameRate": 20}, 30.0, "CineRate"),
    ({"FrameTime": "0", "RecommendedDisplayFrameRate": 20}, 20.0, "RecommendedDisplayFrameRate"),
    ({}, 0.0, "none"),
])
def test_fps_from_tags_in_order(tmp_path, tags, fps, source):
    frames = np.random.default_rng(0).integers(0, 255, (3, 16, 16), dtype=np.uint8)
    cine = read_dicom(write_dicom(tmp_path / "f.dcm", frames, fps_tags=tags))
    assert cine.fps == pytest.approx(fps) and cine.fps_source.split(" ")[0] == source
    ds = pydicom.dcmread(tmp_path / "f.dcm")
    assert frame_rate(ds)[0] == pytest.approx(fps)


def _one_line_error(capsys, argv) -> str:
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "Traceback" not in err and len(err.splitlines()) == 1, err
    return err


def test_refused_without_pixel_data(tmp_path, capsys, cine):
    path = write_dicom(tmp_path / "report.dcm", grey(cine), pixel_data=False)
    err = _one_line_error(capsys, ["convert", str(path), "--out", str(tmp_path / "out")])
    assert "report.dcm" in err and "without pixel data" in err
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_refused_single_frame(tmp_path, capsys, cine):
    path = write_dicom(tmp_path / "still.dcm", grey(cine)[:1])
    err = _one_line_error(capsys, ["convert", str(path), "--out", str(tmp_path / "out")])
    assert "single-frame" in err


def test_refused_non_ultrasound_modality(tmp_path, capsys, cine):
    path = write_dicom(tmp_path / "ct.dcm", grey(cine), modality="CT")
    err = _one_line_error(capsys, ["convert", str(path), "--out", str(tmp_path / "out")])
    assert "modality CT, not ultrasound" in err


def test_refused_colour_doppler(tmp_path, capsys):
    doppler = draw_cine(doppler=True)
    path = write_dicom(tmp_path / "doppler.dcm", doppler.frames, "RGB")
    err = _one_line_error(capsys, ["convert", str(path), "--out", str(tmp_path / "out")])
    assert "colour Doppler" in err


def test_refused_when_decoder_missing(tmp_path, capsys, cine, monkeypatch):
    from pydicom.pixels.decoders.base import Decoder

    path = _write(tmp_path, cine, "jpeg_ybr_full_422")
    monkeypatch.setattr(Decoder, "is_available", property(lambda self: False))
    err = _one_line_error(capsys, ["convert", str(path), "--out", str(tmp_path / "out")])
    assert "JPEG Baseline" in err and "pip install pylibjpeg pylibjpeg-libjpeg" in err


def test_refused_not_dicom(tmp_path):
    bad = tmp_path / "x.dcm"
    bad.write_bytes(b"\0" * 128 + b"DICM" + b"garbage" * 10)
    with pytest.raises(VideoError, match="x.dcm"):
        read_dicom(bad)


def test_no_patient_field_reaches_any_output(tmp_path, cine):
    src = _write(tmp_path, cine, "jpeg_ybr_full_422")
    assert pydicom.dcmread(src).PatientName == PATIENT["PatientName"]  # the input does carry them
    out = tmp_path / "out"
    assert main(["convert", str(src), "--out", str(out), "--previews"]) == 0
    files = [p for p in out.rglob("*") if p.is_file()]
    assert {p.suffix for p in files} >= {".csv", ".avi", ".png"}
    for p in files:
        data = p.read_bytes()
        for value in PATIENT.values():  # each value, and each of its words of 4+ letters
            for word in [value] + [w for w in value.replace("^", " ").split() if len(w) >= 4]:
                assert word.encode() not in data, (p.name, word)
        assert "DOE" not in p.name
