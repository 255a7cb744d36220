"""EchoNet-Synthetic reader (sizes/rates from the video) and CAMUS reader (2023 NIfTI, 2019 MHD)."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from echonet_folders import beating_clip, filelist_row, make_folder

from echodfkd.data import ECHONET_SYNTHETIC_FPS, EchoNetSynthetic, open_dataset
from echodfkd.data.camus import LV_LABEL, Camus, parse_cfg
from echodfkd.errors import DatasetError, VideoError

# --------------------------------------------------------------------------- EchoNet-Synthetic


@pytest.fixture
def synthetic(tmp_path):
    clips = {"sample_000000": beating_clip(24, 32, 0), "sample_000001": beating_clip(20, 48, 1)}
    # The public FileList is wrong about sizes and frame counts; FPS is garbage or absent here.
    rows = [filelist_row(n, None, s, NumberOfFrames=192, FrameHeight=112, FrameWidth=112, FPS="thirty")
            for n, s in zip(clips, ["TRAIN", "VAL"])]
    return make_folder(tmp_path / "syn", clips, rows=rows, fps=30)


def test_synthetic_sizes_and_fps_come_from_the_video(synthetic):
    ds = open_dataset(synthetic)
    assert isinstance(ds, EchoNetSynthetic) and not ds.has_tracings and ds.untraced == []
    assert ds.names("VAL") == ["sample_000001"] and ds.names("TRAIN") == ["sample_000000"]
    info = ds.info("sample_000001")
    assert (info.frames, info.height, info.width, info.fps) == (20, 48, 48, pytest.approx(30))
    frames, fps = ds.video("sample_000000")
    assert frames.shape == (24, 32, 32) and fps == pytest.approx(30) == ds.fps("sample_000000")
    assert np.isnan(ds.filelist["FPS"]).all()  # tolerated, never used


def test_synthetic_fps_override_for_the_public_release(synthetic):
    ds = open_dataset(synthetic, fps_override=ECHONET_SYNTHETIC_FPS)
    assert ds.fps("sample_000000") == 32 and ds.video("sample_000000")[1] == 32
    assert ds.info("sample_000001").fps == 32 and ds.info("sample_000001").frames == 20
    with pytest.raises(DatasetError, match="--fps must be a positive frame rate"):
        EchoNetSynthetic(synthetic, fps_override=0)


def test_synthetic_filelist_without_fps_column_and_missing_video(synthetic):
    table = pd.read_csv(synthetic / "FileList.csv").drop(columns=["FPS", "FrameHeight"])
    table.loc[len(table)] = {"FileName": "sample_000002", "EF": 40, "ESV": 0, "EDV": 0, "NumberOfFrames": 192,
                             "FrameWidth": 112, "Split": "TEST"}
    table.to_csv(synthetic / "FileList.csv", index=False)
    ds = EchoNetSynthetic(synthetic)
    assert ds.fps("sample_000000") == pytest.approx(30) and len(ds) == 3
    with pytest.raises(VideoError, match="sample_000002.avi: file not found"):
        ds.info("sample_000002")


def test_synthetic_still_needs_split_and_numeric_ef(synthetic):
    table = pd.read_csv(synthetic / "FileList.csv")
    table.assign(EF=["x", 3]).to_csv(synthetic / "FileList.csv", index=False)
    with pytest.raises(DatasetError, match="line 2: column EF holds 'x'"):
        EchoNetSynthetic(synthetic)
    table.drop(columns="Split").to_csv(synthetic / "FileList.csv", index=False)
    with pytest.raises(DatasetError, match="missing column"):
        EchoNetSynthetic(synthetic)


# --------------------------------------------------------------------------- CAMUS

T, H, W = 6, 40, 30


def _camus_arrays(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (T, H, W), dtype=np.uint8)
    labels = np.zeros((T, H, W), np.uint8)
    for t in range(T):  # LV shrinks from ED (frame 0) to ES (last frame); asymmetric so a transpose shows
        labels[t, 5:25 - t, 4:12] = LV_LABEL
        labels[t, 28:32, 2:28] = 2
        labels[t, 34:38, 5:10] = 3
    return frames, labels


def _write_nifti(path, array_thw: np.ndarray) -> None:
    # NIfTI stores (x, y, t); pixel spacing 0.3 mm across (x), 0.2 mm down (y).
    nib.save(nib.Nifti1Image(np.transpose(array_thw, (2, 1, 0)), np.diag([0.3, 0.2, 1.0, 1.0])), str(path))


def _write_mhd(path, array_thw: np.ndarray) -> None:
    image = sitk.GetImageFromArray(array_thw)
    image.SetSpacing((0.3, 0.2, 1.0))
    sitk.WriteImage(image, str(path))


CFG = "ED: 1\nES: {es}\nNbFrame: {n}\nSex: F\nAge: 67\nImageQuality: Good\n{ef}\n"


def _make_camus(root, release: str, patients=("patient0001", "patient0002")):
    """A tiny fake CAMUS release: 2023 (database_nifti, .nii.gz) or 2019 (training, .mhd/.raw)."""
    base = root / ("database_nifti" if release == "2023" else "training")
    ext, write = (".nii.gz", _write_nifti) if release == "2023" else (".mhd", _write_mhd)
    seq = "half_sequence" if release == "2023" else "sequence"
    for i, patient in enumerate(patients):
        folder = base / patient
        folder.mkdir(parents=True)
        for j, view in enumerate(("2CH", "4CH")):
            frames, labels = _camus_arrays(10 * i + j)
            write(folder / f"{patient}_{view}_{seq}{ext}", frames)
            write(folder / f"{patient}_{view}_{seq}_gt{ext}", labels)
            write(folder / f"{patient}_{view}_ED{ext}", frames[:1])
            write(folder / f"{patient}_{view}_ED_gt{ext}", labels[:1])
            write(folder / f"{patient}_{view}_ES{ext}", frames[-1:])
            write(folder / f"{patient}_{view}_ES_gt{ext}", labels[-1:])
            ef = "EF: 55.5\nFrameRate: 30" if release == "2023" else "LVedv: 100.5\nLVesv: 45\nLVef: 55"
            (folder / f"Info_{view}.cfg").write_text(CFG.format(es=T, n=T, ef=ef))
    return root


@pytest.mark.parametrize("release", ["2023", "2019"])
def test_camus_reader_both_releases(tmp_path, release):
    camus = Camus(_make_camus(tmp_path, release))
    assert camus.patients() == ["patient0001", "patient0002"] and len(camus) == 2
    assert camus.views("patient0002") == ["2CH", "4CH"]
    assert camus.format("patient0001") == ("nifti" if release == "2023" else "mhd")
    seq = camus.sequence("patient0002", "4CH")
    frames, labels = _camus_arrays(11)
    np.testing.assert_array_equal(seq.frames, frames)
    np.testing.assert_array_equal(seq.labels, labels)
    assert (seq.ed, seq.es) == (0, T - 1)  # cfg numbers are 1-based
    assert seq.lv.dtype == bool and seq.lv[0].sum() > seq.lv[-1].sum() and not seq.lv[:, 30:].any()
    assert seq.spacing == pytest.approx((0.2, 0.3))
    assert seq.info["ImageQuality"] == "Good" and seq.info["NbFrame"] == T
    image, gt = camus.image("patient0002", "4CH", "es")
    np.testing.assert_array_equal(image, frames[-1])
    np.testing.assert_array_equal(gt, labels[-1])


def test_camus_nifti_matches_simpleitk_orientation(tmp_path):
    root = _make_camus(tmp_path, "2023", patients=("patient0007",))
    path = root / "database_nifti" / "patient0007" / "patient0007_2CH_half_sequence.nii.gz"
    via_sitk = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    np.testing.assert_array_equal(Camus(root).sequence("patient0007", "2CH").frames, via_sitk)


def test_camus_resize_keeps_labels(tmp_path):
    camus = Camus(_make_camus(tmp_path, "2023", patients=("patient0001",)))
    seq = camus.sequence("patient0001", "2CH", size=112)
    assert seq.frames.shape == (T, 112, 112) and seq.labels.shape == (T, 112, 112)
    assert set(np.unique(seq.labels)) == {0, 1, 2, 3}  # nearest neighbour: no blended labels
    assert seq.spacing == pytest.approx((0.2 * H / 112, 0.3 * W / 112))


def test_camus_cfg_parsing(tmp_path):
    cfg = tmp_path / "Info_4CH.cfg"
    cfg.write_text("ED: 3\nES: 14\nImageQuality: Poor\nLVef: 48.2\n\n")
    assert parse_cfg(cfg) == {"ED": 3, "ES": 14, "ImageQuality": "Poor", "LVef": 48.2}
    cfg.write_text("ED 3\n")
    with pytest.raises(DatasetError, match="Info_4CH.cfg line 1"):
        parse_cfg(cfg)


def test_camus_bad_inputs(tmp_path):
    with pytest.raises(DatasetError, match="CAMUS folder not found"):
        Camus(tmp_path / "none")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no patientXXXX folder"):
        Camus(tmp_path / "empty")
    root = _make_camus(tmp_path / "c", "2023", patients=("patient0001",))
    folder = root / "database_nifti" / "patient0001"
    camus = Camus(root / "database_nifti")
    (folder / "Info_2CH.cfg").write_text(CFG.format(es=T + 3, n=T, ef=""))
    with pytest.raises(DatasetError, match="Info_2CH.cfg: ES is 9, expected a frame number from 1 to 6"):
        camus.sequence("patient0001", "2CH")
    broken = folder / "patient0001_4CH_half_sequence.nii.gz"
    broken.write_bytes(gzip.compress(b"not a nifti image at all" * 20)[:60])
    with pytest.raises(DatasetError, match="patient0001_4CH_half_sequence.nii.gz: unreadable image"):
        camus.sequence("patient0001", "4CH")
    with pytest.raises(DatasetError, match="unknown CAMUS view"):
        camus.sequence("patient0001", "3CH")
    with pytest.raises(DatasetError, match="no patient 'patient0099'"):
        camus.sequence("patient0099", "2CH")
