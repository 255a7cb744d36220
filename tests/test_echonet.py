"""EchoNet-Dynamic reader: FileList validation, tracings per frame and annotator, masks, ED/ES by area."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from echonet_folders import beating_clip, filelist_row, make_folder, standard_tracings, trace_rows, write_tracings
from skimage.draw import polygon

from echodfkd.data import SPLITS, EchoNetDynamic, EchoNetSynthetic, open_dataset, trace_area, trace_to_mask
from echodfkd.errors import DatasetError


def _coords(rows: list[tuple]) -> np.ndarray:
    return np.array([r[1:5] for r in rows], dtype=float)


def test_trace_to_mask_follows_the_published_rule():
    coords = _coords(trace_rows("a", 0, 50.3, 60.6, 20.2, 30.4))
    mask = trace_to_mask(coords)
    # Drop row 0; x = X1[1:] then reversed X2[1:]; round; fill rows = y, cols = x.
    x = np.concatenate([coords[1:, 0], coords[1:, 2][::-1]])
    y = np.concatenate([coords[1:, 1], coords[1:, 3][::-1]])
    expected = np.zeros((112, 112), bool)
    rr, cc = polygon(np.rint(y).astype(int), np.rint(x).astype(int), (112, 112))
    expected[rr, cc] = True
    assert mask.dtype == bool and mask.shape == (112, 112)
    np.testing.assert_array_equal(mask, expected)
    assert 0.9 < mask.sum() / trace_area(coords) < 1.1
    assert trace_to_mask(coords, (64, 80)).shape == (64, 80)


def test_trace_to_mask_rounds_vertices():
    # A square trace whose chord ends sit at .4 / .6: rounding moves the edges to whole pixels.
    rows = [("a.avi", 20.0, 10.0, 20.0, 30.0, 0)]
    rows += [("a.avi", 10.4, y, 29.6, y, 0) for y in np.linspace(10.4, 29.6, 20)]
    mask = trace_to_mask(_coords(rows), (40, 40))
    ys, xs = np.nonzero(mask)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (10, 30, 10, 30)


def test_trace_to_mask_rejects_bad_arrays():
    with pytest.raises(DatasetError):
        trace_to_mask(np.zeros((21, 3)))


@pytest.fixture
def folder(tmp_path):
    clips = {"a": beating_clip(30, 64, 0), "b": beating_clip(30, 64, 1), "c": beating_clip(30, 64, 2),
             "d": None, "untraced": beating_clip(30, 64, 3)}
    splits = {"a": "TRAIN", "b": "VAL", "c": "TEST", "d": "TEST", "untraced": "TEST"}
    rows = standard_tracings("a", ed=4, es=14)  # ES rows first in the CSV
    rows += trace_rows("b", 3, 32, 32, 8, 12) + trace_rows("b", 12, 32, 32, 12, 18)  # ED last
    rows += trace_rows("c", 2, 32, 32, 10, 14) + trace_rows("c", 2, 33, 32, 11, 15)  # 42 rows: 2 annotators
    rows += trace_rows("c", 9, 32, 32, 6, 9)
    rows += trace_rows("d", 1, 32, 32, 10, 14) + trace_rows("d", 6, 32, 32, 8, 10)[:17]  # 17 rows: incomplete
    return make_folder(tmp_path / "ds", clips, splits, tracings=rows)


def test_filelist_names_splits_and_untraced(folder):
    ds = open_dataset(folder)
    assert isinstance(ds, EchoNetDynamic) and ds.has_tracings and len(ds) == 5
    assert ds.names() == ["a", "b", "c", "d", "untraced"]
    assert ds.names("TEST") == ["c", "d"] and ds.names("test,val") == ["b", "c", "d"]
    assert ds.names("TEST", include_untraced=True) == ["c", "d", "untraced"]
    assert ds.untraced == ["untraced"] and ds.split("b") == "VAL"
    assert "a" in ds and "a.avi" in ds and "zzz" not in ds
    with pytest.raises(DatasetError, match="unknown split"):
        ds.names("TRAINING")
    with pytest.raises(DatasetError, match="no clip named 'zzz'"):
        ds.split("zzz")


def test_video_fps_and_info(folder):
    ds = EchoNetDynamic(folder)
    frames, fps = ds.video("a")
    assert frames.shape == (30, 64, 64) and fps == 50
    info = ds.info("a")
    assert (info.frames, info.height, info.width, info.fps) == (30, 64, 64, 50)
    assert ds.video_path("a.avi") == folder / "Videos" / "a.avi"


def test_tracings_grouped_per_frame_and_annotator(folder):
    ds = EchoNetDynamic(folder)
    a = ds.tracings("a")
    assert sorted(a) == [4, 14] and all(len(v) == 1 and v[0].shape == (21, 4) for v in a.values())
    c = ds.tracings("c")
    assert len(c[2]) == 2 and len(c[9]) == 1  # 42 rows split into two 21-row annotations
    np.testing.assert_allclose(c[2][1][0], [33, 32 - 15, 33, 32 + 15])
    assert ds.trace_mask("c", 2, 0).shape == (64, 64) and ds.trace_mask("c", 2, 0, shape=(112, 112)).shape == (112, 112)
    assert not np.array_equal(ds.trace_mask("c", 2, 0), ds.trace_mask("c", 2, 1))
    d = ds.clip_tracings("d")
    assert list(d.frames) == [1] and d.incomplete == {6: 17}  # reported, never concatenated
    assert ds.tracings("untraced") == {}


def test_ed_es_decided_by_area_whatever_the_csv_order(folder):
    ds = EchoNetDynamic(folder)
    assert ds.traced_frames("a") == (4, 14)  # ES listed first
    assert ds.traced_frames("b") == (12, 3)  # ED listed last
    assert ds.trace_area("a", 4) > ds.trace_area("a", 14)
    assert ds.trace_mask("a", 4).sum() > ds.trace_mask("a", 14).sum()
    with pytest.raises(DatasetError, match="one complete traced frame|1 complete traced"):
        ds.traced_frames("d")


def test_equal_areas_fall_back_to_csv_order(tmp_path):
    rows = trace_rows("a", 9, 30, 30, 10, 12) + trace_rows("a", 2, 30, 30, 10, 12)
    ds = EchoNetDynamic(make_folder(tmp_path, {"a": None}, tracings=rows))
    assert ds.traced_frames("a") == (9, 2)


def test_trace_errors_name_clip_and_frame(folder):
    ds = EchoNetDynamic(folder)
    with pytest.raises(DatasetError, match="a has no trace at frame 7"):
        ds.trace_mask("a", 7)
    with pytest.raises(DatasetError, match="annotator 1 does not exist"):
        ds.trace_mask("a", 4, annotator=1)
    with pytest.raises(DatasetError, match="incomplete trace"):
        ds.trace_mask("d", 6)


def test_volume_tracings_with_garbage_numbers(tmp_path):
    rows = standard_tracings("a")
    rows[25] = ("a.avi", 1.0, "1O.5", 3.0, 4.0, 5)
    root = make_folder(tmp_path, {"a": None}, tracings=rows)
    with pytest.raises(DatasetError, match=r"VolumeTracings.csv line 27: column Y1 holds '1O.5', not a number"):
        open_dataset(root)
    rows[25] = ("a.avi", 1.0, 2.0, 3.0, 4.0, "five")
    write_tracings(root, rows)
    with pytest.raises(DatasetError, match="VolumeTracings.csv line 27: column Frame"):
        open_dataset(root)
    rows[25] = ("a.avi", 1.0, 2.0, 3.0, 4.0, 2.5)
    write_tracings(root, rows)
    with pytest.raises(DatasetError, match="not an integer"):
        open_dataset(root)


def test_volume_tracings_missing_column(tmp_path):
    root = make_folder(tmp_path, {"a": None})
    pd.DataFrame({"FileName": ["a.avi"], "X1": [1], "Y1": [1], "X2": [2], "Y2": [2]}).to_csv(
        root / "VolumeTracings.csv", index=False)
    with pytest.raises(DatasetError, match="VolumeTracings.csv: missing column.*Frame"):
        open_dataset(root)


@pytest.mark.parametrize("change, message", [
    (lambda t: t.drop(columns="Split"), r"FileList.csv: missing column\(s\) Split"),
    (lambda t: t.drop(columns=["FPS", "EF"]), r"missing column\(s\) EF, FPS"),
    (lambda t: t.assign(Split=["TRAIN", "TRAINING"]), "line 3: Split is 'TRAINING'"),
    (lambda t: t.assign(FileName=["a", "a.avi"]), "line 3: FileName a appears twice"),
    (lambda t: t.assign(NumberOfFrames=["30", "3O"]), "line 3: column NumberOfFrames holds '3O'"),
    (lambda t: t.assign(EF=["", "50"]), "line 2: column EF holds an empty cell"),
    (lambda t: t.iloc[:0], "has a header but no rows"),
])
def test_filelist_validation(tmp_path, change, message):
    root = make_folder(tmp_path, {"a": None, "b": None}, tracings=[])
    table = pd.read_csv(root / "FileList.csv", dtype=str)
    change(table).to_csv(root / "FileList.csv", index=False)
    with pytest.raises(DatasetError, match=message):
        open_dataset(root)


def test_unreadable_filelists(tmp_path):
    root = make_folder(tmp_path, {"a": None}, tracings=[])
    (root / "FileList.csv").write_text("")
    with pytest.raises(DatasetError, match="FileList.csv is empty"):
        open_dataset(root)
    (root / "FileList.csv").write_bytes(b"\xff\xfe\x00\x81garbage")
    with pytest.raises(DatasetError, match="not a readable CSV"):
        open_dataset(root)
    with pytest.raises(DatasetError, match="dataset folder not found"):
        open_dataset(tmp_path / "nowhere")
    with pytest.raises(DatasetError, match="no FileList.csv"):
        open_dataset(root / "Videos")


def test_filelist_names_with_avi_and_lowercase_split(tmp_path):
    rows = [filelist_row("a.avi", None, "train"), filelist_row("b", None, " Val ")]
    root = make_folder(tmp_path, {"a": None, "b": None}, rows=rows, tracings=standard_tracings("a"))
    ds = open_dataset(root)
    assert ds.names() == ["a", "b"] and ds.names("VAL", include_untraced=True) == ["b"]


def test_ground_truth_npz(folder):
    ds = EchoNetDynamic(folder)
    assert not ds.has_ground_truth and ds.ground_truth("a") is None
    (folder / "GroundTruth").mkdir()
    np.savez(folder / "GroundTruth" / "a.npz", lv=np.zeros((30, 64, 64), bool), ed=np.array([4]),
             es=np.array([14]), ef=np.float64(55))
    gt = ds.ground_truth("a")
    assert ds.has_ground_truth and gt["lv"].shape == (30, 64, 64) and list(gt["ed"]) == [4]
    (folder / "GroundTruth" / "b.npz").write_text("not an npz")
    with pytest.raises(DatasetError, match="b.npz"):
        ds.ground_truth("b")


def test_open_dataset_without_tracings_is_synthetic(tmp_path):
    ds = open_dataset(make_folder(tmp_path, {"a": beating_clip(20, 32)}))
    assert isinstance(ds, EchoNetSynthetic) and not ds.has_tracings and ds.untraced == []


def test_real_filelist_splits_and_the_six_untraced_clips(shared_fixtures, tmp_path):
    root = tmp_path / "echonet"
    (root / "Videos").mkdir(parents=True)
    shutil.copy(shared_fixtures / "echonet_dynamic_FileList.csv", root / "FileList.csv")
    table = pd.read_csv(root / "FileList.csv")
    assert len(table) == 10030
    # Tracings for every clip except the six large ones at the end of the file, as in the real release.
    traced = table[table["FrameHeight"] == 112]["FileName"]
    block = "".join(f"@.avi,{x1:.2f},{y1:.2f},{x2:.2f},{y2:.2f},{f}\n"
                    for _, x1, y1, x2, y2, f in standard_tracings("x", ed=4, es=14, size=112))
    (root / "VolumeTracings.csv").write_text("FileName,X1,Y1,X2,Y2,Frame\n" +
                                             "".join(block.replace("@", n) for n in traced))
    ds = EchoNetDynamic(root)
    assert len(ds.names()) == 10030
    assert [len(ds.names(s, include_untraced=True)) for s in SPLITS] == [7465, 1288, 1277]
    assert [len(ds.names(s)) for s in SPLITS] == [7460, 1288, 1276]
    assert ds.untraced == table["FileName"].tolist()[-6:] and len(ds.untraced) == 6
    assert "0X5DD5283AC43CCDD1" in ds.untraced and ds.split("0X5DD5283AC43CCDD1") == "TEST"
    assert sorted(ds.split(n) for n in ds.untraced) == ["TEST"] + ["TRAIN"] * 5
    assert all(ds.info(n).height == 768 for n in ds.untraced)
    assert ds.traced_frames(ds.names("TEST")[0]) == (4, 14)
    assert ds.fps(table["FileName"][0]) == 50
