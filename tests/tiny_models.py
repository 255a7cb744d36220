"""Small models and readers shared by several test files (a fitted tiny student, a tiny CLIP, npz folders)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from echodfkd.data.phantom import make_clip
from echodfkd.models import Student

#: A random CLIP small enough to build at test time (open_clip model config).
TINY_CLIP = {
    "embed_dim": 32,
    "vision_cfg": {"image_size": 32, "patch_size": 8, "width": 64, "head_width": 64, "layers": 1,
                   "mlp_ratio": 2.0},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 1, "layers": 1,
                 "mlp_ratio": 2.0},
}


def register_tiny_clip(root: Path, name: str) -> None:
    """Register TINY_CLIP with open_clip under `name` (its config file is written into `root`)."""
    import open_clip

    (root / f"{name}.json").write_text(json.dumps(TINY_CLIP))
    open_clip.add_model_config(root / f"{name}.json")


def fitted_student(run: Path, size: int, steps: int) -> Path:
    """Save a tiny 2-block student fitted for `steps` steps to 3 phantom clips' LV masks, as a run at `size` px."""
    torch.manual_seed(0)
    clips = [make_clip(seed=3, index=i, size=size, frames=48) for i in range(3)]
    x = torch.from_numpy(np.stack([c.frames for c in clips]).astype(np.float32))[:, :, None]
    y = torch.from_numpy(np.stack([c.lv for c in clips]).astype(np.float32))[:, :, None]
    model = Student(blocks=2, filters=6)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for it in range(steps):
        s = (it * 7) % (x.shape[1] - 8)
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x[:, s:s + 8]), y[:, s:s + 8])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval().save_pretrained(run, extra_config={"thresholds": {"dice": 0.5, "afd": 0.5}, "infer_size": size})
    return run


def npz_arrays(folder: Path) -> dict[str, dict[str, np.ndarray]]:
    """Every array of every .npz file of a folder: {file stem: {key: array}}."""
    out = {}
    for path in sorted(folder.glob("*.npz")):
        with np.load(path) as z:
            out[path.stem] = {k: z[k] for k in z.files}
    return out


def randomise_bn(model: Student) -> Student:
    """`model` in eval mode with random BatchNorm running statistics (so folded-BN engines are really tested)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return model.eval()
