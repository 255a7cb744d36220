"""Content hashes: one SHA-256 of a module's state dict and one of a file, used wherever echodfkd identifies
weights or inputs (targets' meta.json, `teacher info`, the compiled-engine key, config.json's
weights_sha256, EchoCLIP caches, converted clip names).
"""

from __future__ import annotations

import hashlib
import os
from typing import Any


def state_dict_sha256(module: Any) -> str:
    """SHA-256 (hex) of a module's weights: names, dtypes, shapes and bytes of its state dict, in name order."""
    import torch

    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        # Reinterpret as bytes so every dtype (bf16, bool) hashes the same way.
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
