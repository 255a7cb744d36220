"""Content hashes of weights: one SHA-256 over a module's state dict, used wherever weights are identified.

(Teacher targets' meta.json, `teacher info`, the compiled-engine cache key.) Files are hashed by
`io.records.file_sha256`.
"""

from __future__ import annotations

import hashlib
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
