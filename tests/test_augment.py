"""Echo augmentations: frames and soft targets move together; intensity changes touch the frames only."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from echodfkd.data.augment import AugmentSettings, EchoAugment


def _window(n: int = 6, t: int = 4, size: int = 48) -> tuple[torch.Tensor, torch.Tensor]:
    """Frames that are bright exactly where an off-centre ellipse target is (so a warp that misses shows)."""
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    target = (((xx - 30) / 9.0) ** 2 + ((yy - 20) / 13.0) ** 2 <= 1).float()
    targets = (target * 255).expand(n, t, 1, size, size).clone()
    frames = (20 + 200 * target).expand(n, t, size, size).clone()
    return frames, targets


def _dice(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(2 * (a & b).sum() / max(1, int(a.sum() + b.sum())))


def test_geometry_moves_frames_and_targets_together():
    torch.manual_seed(0)
    frames, targets = _window()
    aug = EchoAugment(AugmentSettings(strength=1.0, erase_p=0.0, sector_p=0.0, noise=0.0, speckle=0.0))
    x, y = aug(frames, targets)
    assert x.shape == frames.shape and y.shape == targets.shape
    assert 0 <= float(x.min()) and float(x.max()) <= 255 and 0 <= float(y.min()) and float(y.max()) <= 255.01
    moved = 0
    for i in range(len(x)):
        bright = x[i, 0] > 0.5 * float(x[i, 0].max())
        truth = y[i, 0, 0] > 127
        assert _dice(bright, truth) > 0.9              # the frame's heart is where its target says
        moved += _dice(truth, targets[i, 0, 0] > 127) < 0.97
        # one warp per clip: every frame of a window gets the same geometry
        assert torch.equal(y[i, 0], y[i, -1])
    assert moved >= 3  # the geometry really changes from clip to clip


def test_intensity_changes_frames_only_and_strength_zero_is_identity():
    torch.manual_seed(1)
    frames, targets = _window()
    aug = EchoAugment(AugmentSettings(strength=1.0, rotate_deg=0.0, shift=0.0, zoom=0.0))
    x, y = aug(frames, targets)
    assert torch.allclose(y, targets, atol=1e-3)       # no geometry: targets untouched
    assert not torch.allclose(x, frames, atol=1.0)    # but the frames changed
    off = EchoAugment(AugmentSettings(strength=0.0))
    x0, y0 = off(frames, targets)
    assert x0 is frames and y0 is targets


def test_noise_differs_between_frames_of_a_window():
    torch.manual_seed(2)
    frames, targets = _window(n=2, t=3)
    x, _ = EchoAugment(AugmentSettings(rotate_deg=0.0, shift=0.0, zoom=0.0, noise=0.2, erase_p=0.0))(frames, targets)
    assert not torch.allclose(x[:, 0], x[:, 1])


def test_strength_is_bounded():
    with pytest.raises(ValueError, match="strength"):
        AugmentSettings(strength=3.0)
    assert AugmentSettings().as_dict()["strength"] == 1.0
