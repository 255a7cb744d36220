"""EchoCLIP scores from embeddings: mask quality (blackened masks vs prompts) and the phase signal.

Similarity is the plain dot product of L2-normalised image and text embeddings (no logit scale).

Mask quality (paper §3.8), per frame with the mask binarised:
- (a) mask pixels blackened -> sim("WALL"): the walls must still be seen, so the mask does not overflow;
- (b) mask dilated by 5 px, blackened -> sim("LEFT VENTRICLE") - sim("NOTHING"): the LV must be gone,
  so the mask is not too small. The reference code never applied its dilation; here it is applied.
- combined (the reference's score) = mean WALL + mean NOTHING - mean LEFT VENTRICLE; higher is better.

Phase (paper §3.9, Fig. 5): s(t) = sim(CLOSED) - sim(OPEN); its cumulative sum with the linear trend
removed is the integrated prompt signal, fed to the median-block aFD method (ED = max, ES = min).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from scipy import ndimage, signal as sps
from skimage.morphology import disk

from echodfkd.measures.phases import PHASES, find_phase_frame, find_phase_frames

DEFAULT_PROMPTS = {
    "wall": "WALL",
    "lv": "LEFT VENTRICLE",
    "nothing": "NOTHING",
    "closed": "THE MITRAL VALVE IS CLOSED",
    "open": "THE MITRAL VALVE IS OPEN",
}
DILATION_PX = 5


def dilate_masks(masks: np.ndarray, radius: int = DILATION_PX) -> np.ndarray:
    """Dilate each frame's bool mask (T,H,W) by a Euclidean disk of `radius` pixels (in-plane only)."""
    m = np.asarray(masks, dtype=bool)
    if radius <= 0:
        return m.copy()
    footprint = disk(radius).astype(bool)
    structure = footprint[None] if m.ndim == 3 else footprint
    return ndimage.binary_dilation(m, structure=structure)


def blacken(frames: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Copy of uint8 frames (T,H,W) with the pixels under the bool masks set to 0."""
    out = np.array(frames, dtype=np.uint8, copy=True)
    out[np.asarray(masks, dtype=bool)] = 0
    return out


def wall_input(frames: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Variant (a): the mask itself blackened."""
    return blacken(frames, masks)


def lv_input(frames: np.ndarray, masks: np.ndarray, radius: int = DILATION_PX) -> np.ndarray:
    """Variant (b): the mask dilated by `radius` px, then blackened."""
    return blacken(frames, dilate_masks(masks, radius))


def similarities(image_emb: np.ndarray, text_emb: np.ndarray) -> np.ndarray:
    """(T,P) dot products of L2-normalised image (T,D) and text (P,D) embeddings."""
    return np.asarray(image_emb, np.float64) @ np.asarray(text_emb, np.float64).T


def mask_quality(sim_wall: np.ndarray, sim_lv: np.ndarray, sim_nothing: np.ndarray) -> dict[str, float]:
    """Per-prompt means and the reference combined score (mean WALL + mean NOTHING - mean LV)."""
    wall, lv, nothing = (float(np.mean(x)) for x in (sim_wall, sim_lv, sim_nothing))
    return {"wall": wall, "lv": lv, "nothing": nothing, "lv_minus_nothing": lv - nothing,
            "combined": wall + nothing - lv}


def phase_curve(sim_closed: np.ndarray, sim_open: np.ndarray, sign: float = 1.0) -> np.ndarray:
    """Integrated prompt signal: detrend(cumsum(sim(CLOSED) - sim(OPEN))), times `sign` (+1 or -1)."""
    s = np.asarray(sim_closed, np.float64) - np.asarray(sim_open, np.float64)
    c = np.cumsum(s)
    return float(sign) * (sps.detrend(c, type="linear") if c.size > 1 else c - c.mean())


def echoclip_frames(curve: np.ndarray, human: Mapping[str, Sequence[int]] | None = None
                    ) -> dict[str, list[dict]]:
    """EchoCLIP's ED/ES frames: one per human frame when there is one, else one per beat of the curve.

    Each entry is {"reference": human frame or None, "frame": EchoCLIP's frame}.
    """
    out: dict[str, list[dict]] = {}
    for phase in PHASES:
        refs = list((human or {}).get(phase, []))
        if refs:
            out[phase] = [{"reference": int(r), "frame": find_phase_frame(curve, int(r), phase)} for r in refs]
        else:
            out[phase] = [{"reference": None, "frame": f} for f in find_phase_frames(curve, phase)]
    return out


def model_vs_echoclip(area: np.ndarray, found: Mapping[str, list[dict]]) -> dict[str, dict]:
    """A model's ED/ES frames from its mask-area curve, anchored like EchoCLIP's, and |model - EchoCLIP|.

    The anchor is the human frame when there is one (both searches stay on the human's beat), else
    EchoCLIP's own frame on each beat. Returns per phase {"frames": [...], "error": mean distance or None}.
    """
    out: dict[str, dict] = {}
    for phase in PHASES:
        frames, dists = [], []
        for item in found.get(phase, []):
            anchor = item["reference"] if item["reference"] is not None else item["frame"]
            f = find_phase_frame(area, anchor, phase)
            frames.append(f)
            dists.append(abs(f - item["frame"]))
        out[phase] = {"frames": frames, "error": float(np.mean(dists)) if dists else None}
    return out


def echoclip_vs_human(found: Mapping[str, list[dict]]) -> dict[str, float | None]:
    """Mean |EchoCLIP frame - human frame| per phase (None when the clip has no human frame)."""
    out: dict[str, float | None] = {}
    for phase in PHASES:
        pairs = [(i["frame"], i["reference"]) for i in found.get(phase, []) if i["reference"] is not None]
        out[phase] = float(np.mean([abs(a - b) for a, b in pairs])) if pairs else None
    return out


def correlation(a: np.ndarray, b: np.ndarray) -> float | None:
    """Pearson r of two per-frame curves (None when either is constant): checks the curve's orientation."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.size < 2 or a.std() == 0 or b.std() == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])
