"""Check an ONNX export against PyTorch: the exported graph run by ONNX Runtime vs `Student.step`.

It runs the graph through the streaming stage's `OnnxEngine`, so it lives here and not in models/export.py
(the model stage does not import the later stream stage).
"""

from __future__ import annotations

import os

import numpy as np
import torch

from echodfkd.errors import ModelError
from echodfkd.models.student import Student
from echodfkd.stream.engines import OnnxEngine


def check_onnx(path: str | os.PathLike, student: Student, frames: np.ndarray) -> float:
    """Max |ONNX Runtime - PyTorch `Student.step`| over the logits of a streamed clip (T, H, W)."""
    engine = OnnxEngine(path)
    frames = np.asarray(frames, dtype=np.float32)
    if tuple(frames.shape[1:]) != engine.size:
        raise ModelError(f"check clip is {frames.shape[2]}x{frames.shape[1]}, the graph expects "
                         f"{engine.size[1]}x{engine.size[0]}")
    student = student.cpu().eval()
    state, worst = None, 0.0
    with torch.inference_mode():
        for frame in frames:
            ref, state = student.step(torch.from_numpy(frame)[None, None], state)
            worst = max(worst, float(np.abs(engine.step(frame) - ref[0].numpy()).max()))
    return worst
