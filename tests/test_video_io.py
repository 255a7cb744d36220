"""Video I/O and atomic writes: round trips, EchoNet's AVI layout, and clear errors on damaged files."""

from __future__ import annotations

import json
import os
import stat

import cv2
import numpy as np
import pytest

from echodfkd.errors import VideoError
from echodfkd.io.atomic import atomic_path, save_json, save_npz, save_text
from echodfkd.io.video import read_video, resize_frames, resize_masks, video_info, write_color_video, write_video


def _gradient_clip(frames: int = 12, h: int = 48, w: int = 64) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w]
    return np.stack([((xx * 3 + yy * 2 + 5 * t) % 256) for t in range(frames)]).astype(np.uint8)


def test_round_trip_shape_fps_and_values(tmp_path):
    clip = _gradient_clip()
    path = write_video(tmp_path / "a.avi", clip, fps=37.5)
    frames, fps = read_video(path)
    assert frames.shape == clip.shape and frames.dtype == np.uint8
    assert fps == pytest.approx(37.5)
    assert np.abs(frames.astype(int) - clip).mean() < 4  # MJPEG is lossy, but close at quality 95
    info = video_info(path)
    assert (info.frames, info.height, info.width) == (12, 48, 64) and info.fps == pytest.approx(37.5)


def test_written_avi_is_mjpeg_with_three_equal_channels(tmp_path):
    path = write_video(tmp_path / "a.avi", _gradient_clip(), fps=50)
    cap = cv2.VideoCapture(str(path))
    fourcc = int(cap.get(cv2.CAP_PROP_FOURCC))
    ok, frame = cap.read()
    cap.release()
    assert ok and frame.shape == (48, 64, 3)
    assert "".join(chr((fourcc >> (8 * i)) & 0xFF) for i in range(4)).upper() == "MJPG"
    # Gray stored as 3 channels: they agree up to JPEG chroma rounding.
    assert np.abs(frame[..., 0].astype(int) - frame[..., 2]).max() <= 2


def test_float_frames_are_rounded_and_clipped(tmp_path):
    clip = np.full((3, 16, 16), 300.0)
    clip[1] = -20.0
    frames, _ = read_video(write_video(tmp_path / "f.avi", clip, fps=10))
    assert frames[0].min() >= 250 and frames[1].max() <= 5


def test_write_video_rejects_bad_shapes(tmp_path):
    with pytest.raises(VideoError, match="bad.avi"):
        write_video(tmp_path / "bad.avi", np.zeros((16, 16), np.uint8), fps=10)
    with pytest.raises(VideoError):
        write_video(tmp_path / "bad.avi", np.zeros((0, 16, 16), np.uint8), fps=10)
    assert not any(tmp_path.iterdir())


def test_write_is_atomic_and_keeps_umask_permissions(tmp_path):
    path = write_video(tmp_path / "a.avi", _gradient_clip(), fps=50)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.avi"]  # no temporary file left behind
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_color_video_round_trip(tmp_path):
    rgb = np.zeros((4, 32, 32, 3), np.uint8)
    rgb[..., 0] = 200  # red
    frames, fps = read_video(write_color_video(tmp_path / "c.avi", rgb, fps=25))
    assert frames.shape == (4, 32, 32) and fps == pytest.approx(25)
    with pytest.raises(VideoError):
        write_color_video(tmp_path / "c.avi", np.zeros((4, 32, 32), np.uint8), fps=25)


def test_missing_folder_zero_byte_and_text_files_raise_video_error(tmp_path):
    (tmp_path / "zero.avi").write_bytes(b"")
    (tmp_path / "text.avi").write_text("this is not a video\n" * 20)
    cases = {"missing.avi": "not found", "zero.avi": "empty file", "text.avi": "not a readable video"}
    for name, words in cases.items():
        for reader in (read_video, video_info):
            with pytest.raises(VideoError, match=words) as err:
                reader(tmp_path / name)
            assert str(tmp_path / name) in str(err.value)
    with pytest.raises(VideoError, match="is a folder"):
        read_video(tmp_path)


def test_truncated_video_is_refused_unless_lenient(tmp_path):
    path = write_video(tmp_path / "full.avi", _gradient_clip(frames=20), fps=50)
    data = path.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoError, match="truncated") as err:
        read_video(cut)
    assert "cut.avi" in str(err.value)
    frames, _ = read_video(cut, strict=False)
    assert 0 < len(frames) < 20


def test_zero_frame_video_is_refused(tmp_path):
    path = tmp_path / "empty.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 50.0, (32, 32), True)
    writer.release()
    assert path.exists()
    with pytest.raises(VideoError, match="empty.avi"):
        read_video(path)


def test_resize_frames_and_masks():
    frames = _gradient_clip(frames=3, h=40, w=40)
    assert resize_frames(frames, 20).shape == (3, 20, 20)
    assert resize_frames(frames, (50, 30)).shape == (3, 50, 30)
    assert resize_frames(frames, 40) is frames
    masks = np.zeros((2, 40, 40), bool)
    masks[:, 10:30, 10:30] = True
    small = resize_masks(masks, 20)
    assert small.dtype == bool and small.shape == (2, 20, 20)
    assert small[:, 5:15, 5:15].all() and not small[:, :4].any()
    soft = resize_masks((masks * 255).astype(np.uint8), 80)
    assert soft.dtype == np.uint8 and soft.shape == (2, 80, 80) and soft.max() == 255


def test_atomic_helpers_write_whole_files_only(tmp_path):
    save_npz(tmp_path / "a.npz", masks=np.ones((2, 3), np.uint8))
    with np.load(tmp_path / "a.npz") as data:
        assert data["masks"].shape == (2, 3)
    save_json(tmp_path / "m.json", {"x": np.float32(0.5), "a": np.arange(3), "p": tmp_path})
    assert json.loads((tmp_path / "m.json").read_text()) == {"x": 0.5, "a": [0, 1, 2], "p": str(tmp_path)}
    save_text(tmp_path / "t.txt", "hello")
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "t.txt") as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert (tmp_path / "t.txt").read_text() == "hello"  # the old file survives a failed write
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npz", "m.json", "t.txt"]


def test_real_fixture_clip_decodes(shared_fixtures):
    frames, fps = read_video(shared_fixtures / "a4c_112x112_50fps.avi")
    assert frames.shape == (173, 112, 112) and frames.dtype == np.uint8
    assert fps == pytest.approx(50)
    assert 5 < frames.mean() < 120  # a real B-mode clip, not blank


def test_concurrent_video_opens_always_restore_stderr(tmp_path):
    """Threads reading videos at once (teacher train, label) must give stderr back: fd 2 is process-wide,
    and a thread that saved it while another had it on /dev/null used to leave it there for good,
    silencing every later error line."""
    import threading

    from echodfkd.io import video

    path = tmp_path / "a.avi"
    write_video(path, np.zeros((2, 16, 16), np.uint8), 25)
    before = os.fstat(2)
    start = threading.Barrier(8)

    def reader() -> None:
        start.wait()
        for _ in range(200):
            with video._quiet_stderr():
                os.sched_yield()

    threads = [threading.Thread(target=reader) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    after = os.fstat(2)
    assert (after.st_dev, after.st_ino) == (before.st_dev, before.st_ino)
    read_video(path)  # and a later open still works
