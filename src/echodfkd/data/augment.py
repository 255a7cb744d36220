"""Echo-style training augmentations for frame windows and their (soft) targets, built on Kornia.

Geometric transforms (zoom, rotation, shift) move frames and targets together; everything else touches
the frames only: gain, gamma and contrast, a depth ramp (residual time-gain compensation), blur, additive
and multiplicative (speckle-like) noise, a jittered sector edge and random erasing (dropout). A window is
(N, T, H, W) and is transformed with one set of parameters per clip, the same for all its frames, as a
probe held still would see it; the noise alone changes from frame to frame.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

STRENGTHS = (0.0, 2.0)


@dataclass(frozen=True)
class AugmentSettings:
    """Ranges at strength 1 (each scales linearly with `strength`; 0 turns augmentation off)."""

    strength: float = 1.0
    rotate_deg: float = 10.0
    shift: float = 0.06          # fraction of the frame
    zoom: float = 0.15           # scale in [1 - zoom, 1 + zoom]
    gamma: float = 0.35          # log-range of the gamma exponent
    contrast: float = 0.3
    gain: float = 0.3
    depth_ramp: float = 0.4      # gain change from top to bottom
    blur_sigma: float = 1.0
    noise: float = 0.04          # additive Gaussian std, fraction of full scale
    speckle: float = 0.25        # std of the log of a multiplicative, spatially correlated noise
    sector_p: float = 0.3        # chance of a narrower/shifted fan
    erase_p: float = 0.3

    def __post_init__(self) -> None:
        if not STRENGTHS[0] <= self.strength <= STRENGTHS[1]:
            raise ValueError(f"augmentation strength must be in [{STRENGTHS[0]}, {STRENGTHS[1]}], got {self.strength}")

    def as_dict(self) -> dict[str, float]:
        """JSON-ready settings."""
        return asdict(self)


class EchoAugment(nn.Module):
    """Random echo augmentations: `aug(frames, targets)` with frames (N, T, H, W) on 0-255, targets (N, T, C, H, W)."""

    def __init__(self, settings: AugmentSettings | None = None) -> None:
        super().__init__()
        import kornia.augmentation as K

        self.settings = s = settings or AugmentSettings()
        k = s.strength
        self.enabled = k > 0
        if not self.enabled:
            return
        self.geometric = K.RandomAffine(degrees=s.rotate_deg * k, translate=(s.shift * k, s.shift * k),
                                        scale=(1.0 - s.zoom * k, 1.0 + s.zoom * k), p=0.8)
        g = s.gamma * k
        self.intensity = nn.Sequential(
            K.RandomGamma(gamma=(math.exp(-g), math.exp(g)), gain=(1.0 - s.gain * k, 1.0 + s.gain * k), p=0.8),
            K.RandomContrast(contrast=(1.0 - s.contrast * k, 1.0 + s.contrast * k), p=0.5),
            K.RandomGaussianBlur(kernel_size=5, sigma=(0.1, max(0.11, s.blur_sigma * k)), p=0.3),
        )
        self.erase = K.RandomErasing(scale=(0.01, 0.06), ratio=(0.3, 3.0), value=0.0, p=min(1.0, s.erase_p * k))

    def forward(self, frames: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Augmented (frames, targets), same shapes and scales as given."""
        if not self.enabled:
            return frames, targets
        n, t, h, w = frames.shape
        tshape = targets.shape
        x = frames.float() / 255.0
        y = targets.float().reshape(n, -1, h, w)
        both = self.geometric(torch.cat([x, y], dim=1))  # one bilinear warp for frames and soft targets
        x, y = both[:, :t], both[:, t:]
        x = self.intensity(x.clamp(0.0, 1.0))
        x = self._depth_ramp(x)
        x = self._speckle(x)
        x = self._sector(x)
        x = self.erase(x)
        s = self.settings
        x = x + torch.randn_like(x) * (s.noise * s.strength * torch.rand(n, 1, 1, 1, device=x.device))
        return (x.clamp(0.0, 1.0) * 255.0).to(frames.dtype if frames.is_floating_point() else torch.float32), \
            y.reshape(tshape).to(targets.dtype if targets.is_floating_point() else torch.float32)

    def _depth_ramp(self, x: torch.Tensor) -> torch.Tensor:
        """Gain that changes linearly with depth (rows), as a mis-set time-gain compensation does."""
        n, _, h, _ = x.shape
        slope = (torch.rand(n, 1, 1, 1, device=x.device) * 2 - 1) * self.settings.depth_ramp * self.settings.strength
        rows = torch.linspace(-0.5, 0.5, h, device=x.device).view(1, 1, h, 1)
        return x * (1.0 + slope * rows).clamp_min(0.2)

    def _speckle(self, x: torch.Tensor) -> torch.Tensor:
        """Multiplicative log-normal noise with ~2 px grains, new in every frame."""
        n = x.shape[0]
        sigma = self.settings.speckle * self.settings.strength * torch.rand(n, 1, 1, 1, device=x.device)
        g = torch.randn_like(x)
        g = F.avg_pool2d(g, 3, stride=1, padding=1, count_include_pad=False) * 3.0  # keep ~unit std
        return x * torch.exp(sigma * g - 0.5 * sigma ** 2)

    def _sector(self, x: torch.Tensor) -> torch.Tensor:
        """With probability sector_p, blank outside a random fan (apex near the top centre, 35-50 deg)."""
        n, _, h, w = x.shape
        s = self.settings
        pick = torch.rand(n, device=x.device) < s.sector_p * s.strength
        if not bool(pick.any()):
            return x
        ax = 0.5 + (torch.rand(n, device=x.device) - 0.5) * 0.1
        ay = (torch.rand(n, device=x.device) - 0.7) * 0.1
        half = torch.deg2rad(35.0 + 15.0 * torch.rand(n, device=x.device))
        yy, xx = torch.meshgrid((torch.arange(h, device=x.device) + 0.5) / h,
                                (torch.arange(w, device=x.device) + 0.5) / w, indexing="ij")
        theta = torch.atan2(xx[None] - ax[:, None, None], yy[None] - ay[:, None, None])
        inside = (theta.abs() <= half[:, None, None]).float()
        keep = torch.where(pick[:, None, None], inside, torch.ones_like(inside))
        return x * keep[:, None]


def augment_clip(frames: np.ndarray, targets: np.ndarray | None = None, strength: float = 1.0,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray | None]:
    """One augmented copy of a whole clip: frames (T, H, W) uint8 and optional targets (T, C, H, W) uint8.

    The clip is one sample, so its geometry and grey map change once for all its frames (as another
    probe position and scanner setting would); used to widen calibration sets beyond the phantom's look.
    """
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        aug = EchoAugment(AugmentSettings(strength=strength))
        x = torch.from_numpy(np.ascontiguousarray(frames)).float()[None]
        if targets is None:
            y = torch.zeros((1, x.shape[1], 1) + tuple(x.shape[2:]))
        else:
            y = torch.from_numpy(np.ascontiguousarray(targets)).float()[None]
        with torch.no_grad():
            xa, ya = aug(x, y)
    finally:
        torch.random.set_rng_state(state)
    out = np.clip(np.rint(xa[0].numpy()), 0, 255).astype(np.uint8)
    if targets is None:
        return out, None
    return out, np.clip(np.rint(ya[0].numpy()), 0, 255).astype(np.uint8)
