"""Helpers for the viewer tests: a hand-set student that segments dark cavities, and a beating synthetic clip.

Training even a tiny student takes minutes on a shared 2-core machine, so the tests build one whose
weights are set by hand: a 1-block ConvLSTM that passes a smoothed "darker than ~70/255" signal straight
through (input gate open, forget gate shut), so its mask follows the dark LV-like cavity and its area
curve beats with the clip.
"""

from __future__ import annotations

from pathlib import Path

import torch
from echonet_folders import beating_clip

from echodfkd.io.video import write_video
from echodfkd.models import Student


def dark_cavity_student(directory: Path, level: float = 70.0, out_channels: int = 1) -> Path:
    """Save a 1-block student whose mask (every output channel) is the (3x3-smoothed) region darker than `level`."""
    model = Student(blocks=1, out_channels=out_channels)
    cell = model.cells[0][0]
    hidden = cell.hidden_channels
    mean, std = float(model.input_mean), float(model.input_std)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        w, b = cell.conv.weight, cell.conv.bias
        b[:hidden] = 6.0               # input gate open
        b[hidden:2 * hidden] = -6.0    # forget gate shut: no memory, mask follows the frame
        b[2 * hidden:3 * hidden] = 6.0  # output gate open
        w[3 * hidden, 0] = -3.0 / 9.0  # g = tanh(-3 * (local mean of normalised x - threshold))
        b[3 * hidden] = 3.0 * (level - mean) / std
        model.norms[0][0].weight.fill_(1.0)
        model.head.weight[:, 0] = 6.0
    extra = {"note": "hand-set dark-cavity student for tests"}
    if out_channels > 1:
        extra["thresholds_rv"] = {"dice": 0.5}
    model.save_pretrained(directory, extra_config=extra)
    return directory


def write_beating_avi(path: Path, frames: int = 48, size: int = 64, fps: float = 25.0, seed: int = 0,
                      bpm: float = 75.0) -> Path:
    """An MJPEG AVI of `echonet_folders.beating_clip(look="cavity")` beating at `bpm` (ED on frame 0)."""
    return write_video(path, beating_clip(frames, size, seed, period=60.0 * fps / bpm, look="cavity"), fps)
