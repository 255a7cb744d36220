"""BatchedEngine steps whose frames cover every row in any order use the whole state, without gathering rows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from echodfkd.models import Student
from echodfkd.stream.batched import BatchedEngine
from echodfkd.stream.engines import TorchEngine
from tiny_models import randomise_bn

SIZE = 32
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_every_row_in_any_order_equals_streaming_each_clip_alone(monkeypatch):
    torch.manual_seed(1)
    student = randomise_bn(Student(blocks=3, filters=6))
    rng = np.random.default_rng(7)
    clips = rng.integers(0, 256, (4, 6, SIZE, SIZE)).astype(np.float32)
    engine = BatchedEngine(student, (SIZE, SIZE))
    slots = [engine.open() for _ in range(4)]

    def no_gather(*args, **kwargs):  # the permuted whole-state path must not fall back to gather/scatter
        raise AssertionError("rows were gathered")

    monkeypatch.setattr(engine, "_step_rows", no_gather)
    got = np.zeros((4, 6) + (1, SIZE, SIZE), np.float32)
    for t in range(6):
        order = rng.permutation(4)  # the streams whose frames arrive first come first in the batch
        out = engine.step([slots[i] for i in order], clips[order, t])
        got[order, t] = out
    for i in range(4):
        alone = TorchEngine(student)
        ref = np.stack([alone.step(f) for f in clips[i]])
        np.testing.assert_allclose(got[i], ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("compiled_buckets", [False, True], ids=["eager", "bucketed"])
def test_state_shrinks_after_a_peak_and_streams_continue_unchanged(monkeypatch, compiled_buckets):
    """Eight streams, six leave: the state keeps the two left (in their order, idle state untouched) and
    their next steps use it whole; every stream's outputs still equal streaming its clip alone."""
    torch.manual_seed(2)
    student = randomise_bn(Student(blocks=3, filters=6))
    rng = np.random.default_rng(11)
    clips = rng.integers(0, 256, (8, 10, SIZE, SIZE)).astype(np.float32)
    engine = BatchedEngine(student, (SIZE, SIZE))
    if compiled_buckets:  # the compiled engine's row counts (buckets), stepped eagerly here
        engine.aot = True
        monkeypatch.setattr(engine, "_compiled_for", lambda *a, **k: None)
    slots = [engine.open() for _ in range(8)]
    got = [engine.step(slots, clips[:, t]) for t in range(4)]  # (4 frames, 8 streams, ...)
    keep = [6, 2]  # two streams on high and low rows stay
    engine.step([slots[6]], clips[6:7, 4])  # stream 6 one frame ahead: its state is not stream 2's
    for i in range(8):
        if i not in keep:
            engine.close(slots[i])
    assert engine.capacity == 2 and engine.open_slots == 2
    assert sorted(engine.row(slots[i]) for i in keep) == [0, 1] and engine.row(slots[2]) == 0  # order kept

    def no_gather(*args, **kwargs):
        raise AssertionError("rows were gathered")

    monkeypatch.setattr(engine, "_step_rows", no_gather)
    alone = {i: TorchEngine(student) for i in keep}
    want = {i: np.stack([alone[i].step(f) for f in clips[i]]) for i in keep}
    np.testing.assert_allclose(np.stack(got)[:, 2], want[2][:4], rtol=1e-4, atol=1e-4)
    for t in range(5, 10):  # stream 6 is at frame t, stream 2 at frame t - 1
        out = engine.step([slots[6], slots[2]], np.stack([clips[6, t], clips[2, t - 1]]))
        np.testing.assert_allclose(out[0], want[6][t], rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(out[1], want[2][t - 1], rtol=1e-4, atol=1e-4)
    for i in keep:
        engine.close(slots[i])
    assert engine.capacity == 0 and engine.state == []
    again = engine.open()  # and it grows again from nothing
    np.testing.assert_allclose(engine.step([again], clips[0, :1])[0], TorchEngine(student).step(clips[0, 0]),
                               rtol=1e-4, atol=1e-4)
