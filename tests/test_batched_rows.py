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
