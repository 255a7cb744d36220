"""Procedural apical-4-chamber echo phantom with exact per-frame ground truth (EchoNet layout).

`generate_phantom(out, videos, style="dynamic"|"synthetic", seed=0, corrupt=0.0, size=112, workers=None)`
writes a dataset folder; `write_preview(root, png)` draws a contact sheet of ED/ES frames with the
ground-truth LV contour.
"""

from echodfkd.data.phantom.clip import clip_name, echonet_mask, make_clip
from echodfkd.data.phantom.corrupt import KINDS
from echodfkd.data.phantom.generate import generate_phantom
from echodfkd.data.phantom.preview import side_by_side, write_preview

__all__ = ["KINDS", "clip_name", "echonet_mask", "generate_phantom", "make_clip", "side_by_side", "write_preview"]
