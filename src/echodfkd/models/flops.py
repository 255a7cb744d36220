"""Compute cost per frame, counted with `torch.utils.flop_counter.FlopCounterMode` (MAC = FLOPs / 2)."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode


def count_gmac_per_frame(model: nn.Module, size: int | tuple[int, int] = 112) -> float:
    """GMAC to process one (size x size) frame: a streaming `step` for a student, a forward pass otherwise.

    FlopCounterMode counts the matrix products and convolutions (the element-wise gates, norms and
    activations are not counted), which is the usual convention for segmentation models.
    """
    h, w = (size, size) if isinstance(size, int) else size
    ref = next(model.parameters())
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            if hasattr(model, "step") and hasattr(model, "init_state"):
                frame = torch.zeros(1, 1, h, w, device=ref.device, dtype=ref.dtype)
                model.step(frame, model.init_state(1, h, w))
            else:
                # A Teacher takes (T, H, W) grayscale frames; a bare segmenter takes (N, 3, H, W).
                from echodfkd.teacher.model import Teacher

                if isinstance(model, Teacher):
                    model(torch.zeros(1, h, w, device=ref.device))
                else:
                    model(torch.zeros(1, 3, h, w, device=ref.device, dtype=ref.dtype))
    finally:
        model.train(was_training)
    return counter.get_total_flops() / 2 / 1e9
