"""Overlapped post-processing of many streams (`MultiStream(overlap=True)`, opt-in): frame t+1 is stepped while
frame t is finished in the post-processing thread; outputs equal the serial scheduler and single streams."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

import echodfkd.stream.multistream as ms
from echodfkd.data.phantom import make_clip
from echodfkd.errors import ModelError
from echodfkd.models import Student
from echodfkd.stream import Predictor
from echodfkd.stream.multistream import MultiStream
from tiny_models import randomise_bn

SIZE = 32
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def predictor(tmp_path_factory) -> Predictor:
    """A random 3-block student's predictor, largest region on (so every finishing step runs)."""
    torch.manual_seed(2)
    run = tmp_path_factory.mktemp("overlap") / "run"
    randomise_bn(Student(blocks=3, filters=6)).save_pretrained(
        run, extra_config={"thresholds": {"dice": 0.45, "afd": 0.5}, "infer_size": SIZE})
    return Predictor(run, largest_component=True)


def _clips(sizes: list[int], input_size: int = 48) -> list[np.ndarray]:
    return [make_clip(seed=3, index=i, size=input_size, frames=40).frames[:t] for i, t in enumerate(sizes)]


def _threads(target, n: int, timeout: float = 60.0) -> None:
    """Run target(i) on n threads; fail (rather than hang) when one does not end."""
    threads = [threading.Thread(target=target, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout)
        assert not t.is_alive(), "a stream thread hung"


def _same(ref, got) -> None:
    assert got.masks.shape == ref.masks.shape
    assert np.abs(ref.masks.astype(int) - got.masks.astype(int)).max() <= 1
    assert np.abs(ref.areas - got.areas).max() <= 1
    assert ref.phases == got.phases and ref.alert.flagged == got.alert.flagged
    for key, value in ref.alert.features.items():
        assert got.alert.features[key] == pytest.approx(value, rel=1e-3, abs=1e-3, nan_ok=True)


def test_overlap_equals_serial_and_single_streams_and_really_overlaps(predictor, monkeypatch):
    clips = _clips([14, 9, 17, 12])
    alone = [predictor.predict_clip(c, 50.0) for c in clips]
    real = ms.finish_frames
    ahead: list[bool] = []

    def watched(predictors, frames, logits):  # was the next step already started when this batch was finished?
        ahead.append(multi._steps_started > finished[0] + 1)
        finished[0] += 1
        return real(predictors, frames, logits)

    results = {}
    for overlap in (True, False):
        finished = [0]
        ahead.clear()
        monkeypatch.setattr(ms, "finish_frames", watched)
        multi = MultiStream.from_predictor(predictor, max_wait_ms=50, overlap=overlap)
        assert multi.overlap is overlap and (multi._post_thread is not None) is overlap
        got: dict[int, object] = {}
        _threads(lambda i: got.__setitem__(i, multi.predict_clip(predictor, clips[i], 50.0)), len(clips))
        multi.shutdown()
        assert max(multi.batch_sizes) > 1 and multi.engine.open_slots == 0
        results[overlap] = [got[i] for i in range(len(clips))]
        # overlapped: most batches are finished while the next one is stepped; serial: never
        assert (sum(ahead) > len(ahead) // 2) if overlap else not any(ahead)
    for ref, a, b in zip(alone, results[True], results[False]):
        _same(ref, a)
        _same(b, a)
        assert np.all(a.latency_ms > 0)


def test_stream_leaving_mid_clip_frees_its_row_and_others_continue(predictor):
    clips = _clips([16, 16, 16])
    alone = [predictor.predict_clip(c, 50.0) for c in clips]
    multi = MultiStream.from_predictor(predictor, max_wait_ms=50, overlap=True)
    got: dict[int, object] = {}

    def one(i: int) -> None:
        with multi.stream(predictor) as p:
            if i == 0:  # stops reading after 5 frames: the generator closes with frame 6 in flight
                stream = p.stream_clip(clips[i])
                first = [next(stream) for _ in range(5)]
                stream.close()
                assert len(p._acc.area) == 6  # frame 6 was finished before close() returned, not after
                got[i] = (first, p.predict_clip(clips[i], 50.0))  # the same stream starts a new clip
            else:
                got[i] = p.predict_clip(clips[i], 50.0)

    _threads(one, len(clips))
    multi.shutdown()
    assert multi.engine.open_slots == 0
    first, again = got[0]
    assert np.abs(np.stack([r.soft for r in first]).astype(int) - alone[0].masks[:5].astype(int)).max() <= 1
    _same(alone[0], again)  # its alert statistics started afresh, not mixed with the abandoned frames
    for i in (1, 2):
        _same(alone[i], got[i])


def test_post_processing_error_reaches_its_streams_and_nothing_hangs(predictor, monkeypatch):
    clips = _clips([12, 12, 12])
    real, calls = ms.finish_frames, [0]

    def broken(predictors, frames, logits):
        calls[0] += 1
        if calls[0] == 3:
            raise ValueError("boom")
        return real(predictors, frames, logits)

    monkeypatch.setattr(ms, "finish_frames", broken)
    multi = MultiStream.from_predictor(predictor, max_wait_ms=50, overlap=True)
    errors: dict[int, BaseException] = {}

    def one(i: int) -> None:
        try:
            multi.predict_clip(predictor, clips[i], 50.0)
        except ModelError as exc:
            errors[i] = exc

    _threads(one, len(clips))
    assert errors and all("ValueError: boom" in str(e) for e in errors.values())
    assert multi.engine.open_slots == 0
    monkeypatch.setattr(ms, "finish_frames", real)  # the engine still serves the next clips
    _same(predictor.predict_clip(clips[0], 50.0), multi.predict_clip(predictor, clips[0], 50.0))
    multi.shutdown()


def test_shutdown_with_streams_in_flight_errors_them_without_hanging(predictor):
    clip = _clips([30])[0]
    multi = MultiStream.from_predictor(predictor, max_wait_ms=50, overlap=True)
    started, errors = threading.Event(), []

    def one(i: int) -> None:
        try:
            with multi.stream(predictor) as p:
                for k, _ in enumerate(p.stream_clip(clip)):
                    if k == 3:
                        started.set()
        except ModelError as exc:
            errors.append(exc)

    thread = threading.Thread(target=one, args=(0,), daemon=True)
    thread.start()
    assert started.wait(30)
    multi.shutdown()
    thread.join(30)
    assert not thread.is_alive() and errors and "shut down" in str(errors[0])
    with pytest.raises(ModelError, match="shut down"):
        multi.open()


def test_push_and_one_frame_clips_finish_without_waiting_for_a_next_step(predictor):
    # urgent frames (push, a clip's last frame) are finished at once, not after max_wait
    multi = MultiStream.from_predictor(predictor, max_wait_ms=60_000, overlap=True)
    try:
        with multi.stream(predictor) as p:
            frame = _clips([1])[0]
            done: list = []
            _threads(lambda i: done.append(p.predict_clip(frame, 50.0)), 1, 30)
            _threads(lambda i: done.append(p.push(frame[0])), 1, 30)
            assert len(done) == 2 and done[0].masks.shape == frame.shape and done[1].soft.shape == frame.shape[1:]
    finally:
        multi.shutdown()


@pytest.mark.slow
def test_compiled_workers_each_load_their_own_engine_and_equal_single_streams(predictor, tmp_path, monkeypatch):
    from echodfkd.io.cache import CACHE_ENV
    from echodfkd.models.compiled import find_compiler
    from echodfkd.stream.batched import BatchedEngine
    from echodfkd.stream.engines import TorchEngine

    if find_compiler() is None:
        pytest.skip("no C++ compiler for AOTInductor")
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    student = predictor.engine.student
    engine = BatchedEngine(student, (SIZE, SIZE), compile=True, chunk=2, workers=2)
    engine.prepare([4])  # two calls of 2 rows, one per worker thread: a compiled model runs one call at a time
    assert sorted(engine._compiled) == [(2, 0), (2, 1)] and engine._compiled[(2, 0)] is not engine._compiled[(2, 1)]
    rng = np.random.default_rng(5)
    clips = rng.integers(0, 256, (4, 6, SIZE, SIZE)).astype(np.float32)
    slots = [engine.open() for _ in clips]
    out = np.stack([engine.step(slots, clips[:, j]) for j in range(clips.shape[1])], 1)
    for i, clip in enumerate(clips):
        alone = TorchEngine(student)
        np.testing.assert_allclose(out[i], np.stack([alone.step(f) for f in clip]), rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("overlap", [True, False])
def test_bad_clip_shapes_refused_in_one_line_and_the_stream_stays_usable(predictor, overlap):
    from echodfkd.errors import VideoError

    multi = MultiStream.from_predictor(predictor, max_wait_ms=50, overlap=overlap)
    try:
        with multi.stream(predictor) as p:
            for bad in (np.zeros((SIZE, SIZE), np.uint8), np.zeros((0, SIZE, SIZE), np.uint8)):
                with pytest.raises(VideoError, match=r"expected a clip of shape \(T, H, W\) with T > 0"):
                    list(p.stream_clip(bad))
            clip = _clips([5])[0]
            _same(predictor.predict_clip(clip, 50.0), p.predict_clip(clip, 50.0))
    finally:
        multi.shutdown()
    with pytest.raises(VideoError, match="T > 0"):
        list(predictor.stream_clip(np.zeros((4, 4), np.uint8)))
