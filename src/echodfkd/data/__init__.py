"""Dataset readers: EchoNet-layout folders (Dynamic, Synthetic, phantoms), CAMUS, and the checker."""

from __future__ import annotations

import os
from pathlib import Path

from echodfkd.data.camus import Camus
from echodfkd.data.echonet import TRACINGS, EchoNetDynamic, trace_area, trace_to_mask
from echodfkd.data.folder import SPLITS, DatasetFolder
from echodfkd.data.synthetic import ECHONET_SYNTHETIC_FPS, EchoNetSynthetic


def open_dataset(root: str | os.PathLike, fps_override: float | None = None) -> DatasetFolder:
    """Open an EchoNet-layout folder: EchoNetDynamic when it has VolumeTracings.csv, else EchoNetSynthetic.

    `fps_override` applies to folders without tracings (e.g. 32 for the public EchoNet-Synthetic).
    """
    root = Path(root)
    if root.is_dir() and (root / TRACINGS).exists():
        return EchoNetDynamic(root)
    return EchoNetSynthetic(root, fps_override=fps_override)


__all__ = [
    "Camus", "DatasetFolder", "ECHONET_SYNTHETIC_FPS", "EchoNetDynamic", "EchoNetSynthetic", "SPLITS",
    "open_dataset", "trace_area", "trace_to_mask",
]
