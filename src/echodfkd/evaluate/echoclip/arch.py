"""Infer an open_clip architecture config from a bare CLIP state dict (a checkpoint without its config).

Shapes fix almost everything: tower widths and depths, the embedding size, the text context and
vocabulary, a ViT's patch and image size, a timm ConvNeXt's variant. Two things cannot be read from
weights and follow open_clip's own conventions instead: attention heads = width / 64 (true of every
bundled CLIP config), and a ConvNeXt tower's input size is 224 px (EchoCLIP's). GELU is assumed, not
QuickGELU. When a checkpoint breaks these conventions, name the architecture with `--echoclip-arch` or use a
`local-dir:` folder holding its `open_clip_config.json`.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

from echodfkd.errors import ModelError

CONVNEXT_IMAGE_SIZE = 224  # EchoCLIP's ConvNeXt-Base input size
# (stem width, blocks per stage) -> timm ConvNeXt variant
_CONVNEXT = {
    (96, (3, 3, 9, 3)): "convnext_tiny",
    (96, (3, 3, 27, 3)): "convnext_small",
    (128, (3, 3, 27, 3)): "convnext_base",
    (192, (3, 3, 27, 3)): "convnext_large",
    (256, (3, 3, 27, 3)): "convnext_xlarge",
    (384, (3, 4, 30, 3)): "convnext_xxlarge",
}


def strip_prefix(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Drop a DataParallel `module.` prefix, as open_clip's loader does."""
    keys = list(state_dict)
    if keys and all(k.startswith("module.") for k in keys):
        return {k[len("module."):]: v for k, v in state_dict.items()}
    return dict(state_dict)


def _count(keys: list[str], pattern: str) -> int:
    """Number of distinct integer indices matched by `pattern` (one capture group)."""
    rx = re.compile(pattern)
    found = {int(m.group(1)) for k in keys if (m := rx.match(k))}
    return max(found) + 1 if found else 0


def _heads(width: int) -> int:
    return max(1, width // 64)


def _text_cfg(sd: Mapping[str, Any], keys: list[str]) -> dict:
    vocab, width = (int(x) for x in sd["token_embedding.weight"].shape)
    layers = _count(keys, r"^transformer\.resblocks\.(\d+)\.")
    hidden = int(sd["transformer.resblocks.0.mlp.c_fc.weight"].shape[0])
    return {
        "context_length": int(sd["positional_embedding"].shape[0]),
        "vocab_size": vocab,
        "width": width,
        "heads": _heads(width),
        "layers": layers,
        "mlp_ratio": hidden / width,
    }


def _vit_cfg(sd: Mapping[str, Any], keys: list[str]) -> dict:
    width, _, patch, _ = (int(x) for x in sd["visual.conv1.weight"].shape)
    tokens = int(sd["visual.positional_embedding"].shape[0]) - 1
    grid = int(round(tokens ** 0.5))
    if grid * grid != tokens:
        raise ModelError(f"cannot infer the ViT image size from {tokens} position tokens; pass --echoclip-arch")
    hidden = int(sd["visual.transformer.resblocks.0.mlp.c_fc.weight"].shape[0])
    return {
        "image_size": grid * patch,
        "patch_size": patch,
        "width": width,
        "head_width": 64 if width >= 64 else width,
        "layers": _count(keys, r"^visual\.transformer\.resblocks\.(\d+)\."),
        "mlp_ratio": hidden / width,
    }


def _convnext_cfg(sd: Mapping[str, Any], keys: list[str]) -> dict:
    stages = _count(keys, r"^visual\.trunk\.stages\.(\d+)\.")
    depths = tuple(_count(keys, rf"^visual\.trunk\.stages\.{i}\.blocks\.(\d+)\.") for i in range(stages))
    stem = int(sd["visual.trunk.stem.0.weight"].shape[0])
    name = _CONVNEXT.get((stem, depths))
    if name is None:
        raise ModelError(f"unknown ConvNeXt variant (stem width {stem}, depths {depths}); pass --echoclip-arch")
    if "visual.head.proj.weight" in sd:
        proj, bias = "linear", "visual.head.proj.bias" in sd
    elif "visual.head.mlp.fc1.weight" in sd:
        proj, bias = "mlp", "visual.head.mlp.fc1.bias" in sd
    else:
        raise ModelError("ConvNeXt image tower without a recognised projection head; pass --echoclip-arch")
    return {
        "timm_model_name": name,
        "timm_model_pretrained": False,
        "timm_pool": "" if "visual.trunk.head.norm.weight" in sd else "avg",
        "timm_proj": proj,
        "timm_proj_bias": bias,
        "image_size": CONVNEXT_IMAGE_SIZE,
    }


def infer_open_clip_config(state_dict: Mapping[str, Any]) -> dict:
    """open_clip `model_cfg` (embed_dim, vision_cfg, text_cfg) matching a CLIP state dict's shapes."""
    sd = strip_prefix(state_dict)
    keys = list(sd)
    if "token_embedding.weight" not in sd or "text_projection" not in sd:
        raise ModelError("not an open_clip CLIP state dict (no token_embedding/text_projection); pass --echoclip-arch")
    if "visual.conv1.weight" in sd:
        vision = _vit_cfg(sd, keys)
    elif "visual.trunk.stem.0.weight" in sd:
        vision = _convnext_cfg(sd, keys)
    else:
        raise ModelError("unrecognised image tower (neither ViT nor timm ConvNeXt); pass --echoclip-arch")
    return {
        "embed_dim": int(sd["text_projection"].shape[1]),
        "vision_cfg": vision,
        "text_cfg": _text_cfg(sd, keys),
    }
