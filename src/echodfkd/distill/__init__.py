"""Knowledge distillation: teacher labelling (`label`), student training (`train`), sweeps and search (`search`).

`from echodfkd.distill import distill, sweep` works (the heavy modules load on first use); the Optuna
study is `echodfkd.distill.search.search` (the submodule has the same name, so it is not re-exported).
"""

from __future__ import annotations

from typing import Any

_LAZY = {"distill": "echodfkd.distill.train", "sweep": "echodfkd.distill.search"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'echodfkd.distill' has no attribute {name!r}")


__all__ = list(_LAZY)
