"""Many streams at once (`echodfkd.stream.multistream`): every stream's output equals streaming it alone."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest
import torch

from echodfkd.data.phantom import make_clip
from echodfkd.errors import EchoDFKDError, ModelError
from echodfkd.models import Student
from echodfkd.stream import Predictor
from echodfkd.stream.alert import AlertAccumulator, update_accumulators
from echodfkd.stream.engines import TorchEngine
from echodfkd.stream.batched import BatchedEngine
from echodfkd.stream.multistream import MultiStream, check_streams, stream_predictor
from tiny_models import randomise_bn

SIZE = 32
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def student() -> Student:
    """A random 3-block student with non-trivial BatchNorm statistics."""
    torch.manual_seed(0)
    return randomise_bn(Student(blocks=3, filters=6))


def _clips(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (int(rng.integers(2, 14)), SIZE, SIZE)).astype(np.float32) for _ in range(n)]


def _alone(student: Student, clip: np.ndarray, precision: str = "fp32") -> np.ndarray:
    engine = TorchEngine(student, precision=precision)
    return np.stack([engine.step(f) for f in clip])


@pytest.mark.parametrize("seed,chunk,workers", [(0, None, 1), (1, None, 1), (2, None, 1), (3, 2, 1), (4, 3, 2),
                                                (5, None, 2)])
def test_random_join_leave_schedule_equals_single_streams(student, seed, chunk, workers):
    clips = _clips(7, seed)
    engine = BatchedEngine(student, (SIZE, SIZE), chunk=chunk, workers=workers)
    rng = np.random.default_rng(100 + seed)
    waiting, slots, pos = list(range(len(clips))), {}, {}
    outs: dict[int, list[np.ndarray]] = {i: [] for i in range(len(clips))}
    partial_steps = full_steps = 0
    while waiting or slots:
        if waiting and (not slots or rng.random() < 0.4):  # join at any step
            i = waiting.pop(0)
            slots[i], pos[i] = engine.open(), 0
        ready = [i for i in slots if rng.random() < 0.7]  # frames arrive at different times
        rng.shuffle(ready)
        if not ready:
            continue
        if len(ready) == engine.capacity:
            full_steps += 1
        else:
            partial_steps += 1
        logits = engine.step([slots[i] for i in ready], np.stack([clips[i][pos[i]] for i in ready]))
        for i, out in zip(ready, logits):
            outs[i].append(out)
            pos[i] += 1
            if pos[i] == len(clips[i]):  # leave at its last frame
                engine.close(slots.pop(i))
    assert partial_steps > 0
    for i, clip in enumerate(clips):
        np.testing.assert_allclose(np.stack(outs[i]), _alone(student, clip), rtol=1e-4, atol=1e-4)
    assert engine.open_slots == 0


def test_slot_reuse_starts_from_zero_state(student):
    a, b = _clips(2, seed=3)
    engine = BatchedEngine(student, (SIZE, SIZE))
    first, other = engine.open(), engine.open()
    for f in a:
        engine.step([first, other], np.stack([f, f]))
    engine.close(first)
    again = engine.open()
    assert again == first  # the freed row is taken by the next stream
    out = [engine.step([again], b[j:j + 1])[0] for j in range(len(b))]
    np.testing.assert_allclose(np.stack(out), _alone(student, b), rtol=1e-4, atol=1e-4)
    with pytest.raises(ModelError, match="not open"):
        engine.step([99], b[:1])


def test_all_rows_in_order_match_and_idle_rows_keep_state(student):
    clip = _clips(1, seed=4)[0]
    engine = BatchedEngine(student, (SIZE, SIZE))
    s0, s1 = engine.open(), engine.open()
    before = [t[engine.row(s1)].clone() for t in engine.state]
    engine.step([s0], clip[:1])  # s1 idle: its state is untouched
    assert all(torch.equal(t[engine.row(s1)], b) for t, b in zip(engine.state, before))
    engine.step([s1, s0], np.stack([clip[0], clip[1]]))
    engine.step([s0, s1], np.stack([clip[2], clip[1]]))  # every row, in order: state fed straight in
    ref = _alone(student, clip[:3])
    np.testing.assert_allclose(engine.step([s0], clip[3:4])[0], _alone(student, clip[:4])[3], rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(engine.step([s1], clip[2:3])[0], ref[2], rtol=1e-4, atol=1e-4)


def test_bf16_precision_matches_its_single_stream_engine(student):
    clip = _clips(1, seed=5)[0]
    engine = BatchedEngine(student, (SIZE, SIZE), precision="bf16")
    slot, other = engine.open(), engine.open()
    out = np.stack([engine.step([slot, other], np.stack([f, f[::-1]]))[0] for f in clip])
    np.testing.assert_allclose(out, _alone(student, clip, "bf16"), atol=0.05)
    with pytest.raises(ModelError, match="precision"):
        BatchedEngine(student, (SIZE, SIZE), precision="fp8")
    with pytest.raises(ModelError, match="chunk"):
        BatchedEngine(student, (SIZE, SIZE), chunk=0)


def _predict_concurrently(multi: MultiStream, predictor: Predictor, clips: list, fps: float) -> list:
    """Each clip on its own thread through `multi` (then shut down); results in clip order."""
    results: dict[int, object] = {}

    def one(i: int) -> None:
        results[i] = multi.predict_clip(predictor, clips[i], fps)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(clips))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    multi.shutdown()
    return [results[i] for i in range(len(clips))]


@pytest.mark.parametrize("post_in_scheduler", [True, False])
def test_scheduler_threads_equal_single_stream_predictor(student, tmp_path, post_in_scheduler):
    run = tmp_path / "run"
    student.save_pretrained(run, extra_config={"thresholds": {"dice": 0.5, "afd": 0.5}, "infer_size": SIZE})
    predictor = Predictor(run)
    clips = [make_clip(seed=7, index=i, size=SIZE, frames=40).frames[: 20 + 5 * i] for i in range(4)]
    alone = [predictor.predict_clip(c, 50.0) for c in clips]
    multi = MultiStream.from_predictor(predictor, max_wait_ms=20, post_in_scheduler=post_in_scheduler)
    results = _predict_concurrently(multi, predictor, clips, 50.0)
    assert max(multi.batch_sizes) > 1  # streams really stepped together
    for ref, got in zip(alone, results):
        assert np.abs(ref.masks.astype(int) - got.masks.astype(int)).max() <= 1
        assert np.abs(ref.areas - got.areas).max() <= 1
        assert ref.phases == got.phases and ref.alert.flagged == got.alert.flagged
    assert multi.engine.open_slots == 0


def test_update_accumulators_equals_whole_clip_statistics():
    from echodfkd.data.video_checks import frame_statistics

    rng = np.random.default_rng(3)
    frames = rng.integers(0, 256, (3, 4, 20, 24)).astype(np.uint8)  # (stream, time, H, W)
    frames[1, 2:] = 7  # blank frames: NaN statistics
    softs = rng.integers(0, 256, (3, 4, 20, 24)).astype(np.uint8)
    softs[2, 1] = 0  # nothing touched
    masks = softs >= 128
    one, many = AlertAccumulator(), [AlertAccumulator() for _ in range(3)]
    for t in range(4):
        one.update(frames[0, t], softs[0, t], masks[0, t])
        rows = [0, 1] if t == 0 else [0, 1, 2]  # the third stream joins a frame late
        update_accumulators([many[i] for i in rows], frames[rows, t], softs[rows, t], masks[rows, t])
    for i, acc in enumerate(many):
        clip = frames[i] if i < 2 else frames[i, 1:]
        soft, mask = (softs[i], masks[i]) if i < 2 else (softs[i, 1:], masks[i, 1:])
        ref = frame_statistics(clip)
        for key in ("std", "spatial", "temporal"):
            np.testing.assert_allclose(np.array(getattr(acc, key)), ref[key], rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(np.array(acc.area), mask.mean(axis=(1, 2)))
        touched = (soft >= 26).sum(axis=(1, 2))
        unsure = ((soft >= 26) & (soft <= 229)).sum(axis=(1, 2))
        np.testing.assert_allclose(np.array(acc.uncertain), np.where(touched > 0, unsure / np.maximum(touched, 1), 0))
    for key in ("std", "spatial", "temporal", "area", "uncertain"):  # the single-stream update is the same code
        np.testing.assert_allclose(np.array(getattr(one, key)), np.array(getattr(many[0], key)))


def test_scheduler_finishes_mixed_sizes_two_channels_largest_region_and_warmup(tmp_path):
    torch.manual_seed(1)
    two = randomise_bn(Student(blocks=3, filters=6, out_channels=2))
    run = tmp_path / "run"
    two.save_pretrained(run, extra_config={"thresholds": {"dice": 0.45, "afd": 0.55}, "infer_size": SIZE})
    predictor = Predictor(run, largest_component=True, warmup=2)
    rng = np.random.default_rng(4)
    clips = [rng.integers(0, 256, (int(t), h, w)).astype(np.uint8)
             for t, (h, w) in zip((9, 6, 12, 7), ((SIZE, SIZE), (48, 40), (20, 28), (64, 64)))]
    alone = [predictor.predict_clip(c, 30.0) for c in clips]
    multi = MultiStream.from_predictor(predictor, max_wait_ms=50)
    results = _predict_concurrently(multi, predictor, clips, 30.0)
    assert max(multi.batch_sizes) > 1
    for i, ref in enumerate(alone):
        got = results[i]
        assert got.masks.shape == ref.masks.shape == clips[i].shape and got.rv.shape == ref.rv.shape
        assert np.abs(ref.masks.astype(int) - got.masks.astype(int)).max() <= 1
        assert np.abs(ref.rv.astype(int) - got.rv.astype(int)).max() <= 1
        assert np.abs(ref.areas - got.areas).max() <= 1
        for key, value in ref.alert.features.items():
            assert got.alert.features[key] == pytest.approx(value, rel=1e-3, abs=1e-3, nan_ok=True)


def test_auto_layout_splits_eager_steps_on_two_threads(student, tmp_path):
    from echodfkd.stream.multistream import AUTO_CHUNK, auto_layout

    run = tmp_path / "run"
    student.save_pretrained(run, extra_config={"infer_size": SIZE})
    predictor = Predictor(run)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert auto_layout(False) == (AUTO_CHUNK, 2) and auto_layout(False, 8) == (8, 2)
        assert auto_layout(True) == (None, 1)
        multi = MultiStream.from_predictor(predictor)
        assert (multi.engine.chunk, multi.engine.workers) == (AUTO_CHUNK, 2)
        multi.shutdown()
        torch.set_num_threads(1)
        assert auto_layout(False) == (None, 1)
    finally:
        torch.set_num_threads(before)


def test_scheduler_finish_error_reaches_every_stream(student, tmp_path, monkeypatch):
    import echodfkd.stream.multistream as ms

    run = tmp_path / "run"
    student.save_pretrained(run, extra_config={"infer_size": SIZE})
    predictor = Predictor(run)
    multi = MultiStream.from_predictor(predictor)

    def broken(*args):
        raise ValueError("boom")

    monkeypatch.setattr(ms, "finish_frames", broken)
    try:
        with multi.stream(predictor) as p:
            with pytest.raises(ModelError, match="ValueError: boom"):
                p.push(np.zeros((SIZE, SIZE), np.uint8))
    finally:
        multi.shutdown()


def test_stream_predictor_has_its_own_alert_state(student, tmp_path):
    run = tmp_path / "run"
    student.save_pretrained(run, extra_config={"infer_size": SIZE})
    predictor = Predictor(run)
    multi = MultiStream.from_predictor(predictor)
    try:
        handle = multi.open()
        clone = stream_predictor(predictor, handle)
        assert clone._acc is not predictor._acc and clone.engine is handle
        clone.push(np.zeros((SIZE, SIZE), np.uint8))
        assert len(predictor._acc.area) == 0 and len(clone._acc.area) == 1
        with pytest.raises(ModelError, match="32x32"):
            handle.step(np.zeros((8, 8), np.float32))
        handle.close()
        with pytest.raises(ModelError, match="closed"):
            handle.step(np.zeros((SIZE, SIZE), np.float32))
    finally:
        multi.shutdown()


def test_onnx_predictor_refused(tmp_path):
    class Fake:
        backend, engine = "onnx", object()

    with pytest.raises(EchoDFKDError, match="torch backend"):
        MultiStream.from_predictor(Fake())


@pytest.mark.parametrize("bad", [0, -1, 2.5, "x", None])
def test_check_streams_refuses(bad):
    with pytest.raises(EchoDFKDError, match="--streams"):
        check_streams(bad)


@pytest.mark.slow
def test_compiled_buckets_pad_and_equal_single_streams(student, tmp_path, monkeypatch):
    from echodfkd.io.cache import CACHE_ENV
    from echodfkd.models.compiled import find_compiler

    if find_compiler() is None:
        pytest.skip("no C++ compiler for AOTInductor")
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    clips = _clips(3, seed=8)
    engine = BatchedEngine(student, (SIZE, SIZE), compile=True)
    engine.prepare([3])  # 3 streams run in the 4-row bucket, one zero row padded
    assert sorted(engine._compiled) == [(4, 0)]
    slots = [engine.open() for _ in clips]
    outs: list[list[np.ndarray]] = [[] for _ in clips]
    for j in range(max(len(c) for c in clips)):
        live = [i for i, c in enumerate(clips) if j < len(c)]
        for i, o in zip(live, engine.step([slots[i] for i in live], np.stack([clips[i][j] for i in live]))):
            outs[i].append(o)
    for i, clip in enumerate(clips):
        np.testing.assert_allclose(np.stack(outs[i]), _alone(student, clip), rtol=1e-3, atol=1e-3)


def test_bench_streams_script_reports_every_row(student, tmp_path, capsys):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_streams.py"
    spec = importlib.util.spec_from_file_location("bench_streams", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    run = tmp_path / "run"
    student.save_pretrained(run, extra_config={"infer_size": SIZE})
    assert bench.main(["--model", str(run), "--streams", "1,3", "--frames", "3", "--rounds", "1", "--threads", "1",
                       "--input", "64", "--layouts", "all,c2w2", "--peak", "5", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model_size"] == [SIZE, SIZE] and out["input_size"] == [64, 64]
    rows = {(r["variant"], r["layout"], r["streams"]) for r in out["rows"]}
    variants = ("engine", "predict", "predict-overlap", "predict-thr", "predict-after-peak")
    assert rows == {(v, lay, n) for v in variants for lay in ("all", "c2w2") for n in (1, 3)}
    assert all(r["aggregate_fps"] > 0 and r["p99_ms"] >= r["p50_ms"] for r in out["rows"])
    with pytest.raises(SystemExit):
        bench.main(["--model", str(run), "--streams", "0"])
    assert "--streams must list numbers >= 1" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench.main(["--model", str(run), "--variants", "engine,fast"])
    assert "--variants must list some of" in capsys.readouterr().err


def test_compiled_bucket_without_compiler_stays_eager_and_equal(student, tmp_path, monkeypatch):
    from echodfkd.io.cache import CACHE_ENV
    from echodfkd.models import compiled as compiled_mod

    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(compiled_mod, "find_compiler", lambda: None)
    lines: list[str] = []
    clips = _clips(2, seed=9)
    engine = BatchedEngine(student, (SIZE, SIZE), compile=True, log=lines.append)
    slots = [engine.open() for _ in clips]
    n = min(len(c) for c in clips)
    out = [engine.step(slots, np.stack([c[j] for c in clips])) for j in range(n)]  # builds fail in the background
    for i, clip in enumerate(clips):
        np.testing.assert_allclose(np.stack([o[i] for o in out]), _alone(student, clip[:n]), rtol=1e-4, atol=1e-4)
    for _ in range(100):
        said = [line for line in lines if "stays eager" in line]
        if said:
            break
        threading.Event().wait(0.05)
    assert said and "C++ compiler" in said[0]
    with pytest.raises(ModelError, match="C\\+\\+ compiler"):
        engine.prepare([2])  # building up front says why, in one line
