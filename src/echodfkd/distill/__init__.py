"""Knowledge distillation: teacher labelling (`label`), student training (`train`), (B, l) sweeps (`sweep`)
and the Optuna search (`search`).

`from echodfkd.distill import distill` works (the heavy module loads on first use); the sweep and the
study are `echodfkd.distill.sweep.sweep` and `echodfkd.distill.search.search` (each submodule has its
function's name, so neither is re-exported).
"""

from __future__ import annotations

from typing import Any

_LAZY = {"distill": "echodfkd.distill.train"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'echodfkd.distill' has no attribute {name!r}")


__all__ = list(_LAZY)
