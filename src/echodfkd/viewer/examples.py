"""Bundled examples: small phantom clips generated on first use into a cache folder (no binaries shipped)."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from echodfkd.errors import EchoDFKDError
from echodfkd.io.cache import cache_root


@dataclass(frozen=True)
class Example:
    """One bundled example: how to generate it and how the page labels it."""

    name: str
    label: str
    style: str
    seed: int
    corrupt: float = 0.0


EXAMPLES = {e.name: e for e in (
    Example("phantom", "Phantom A4C clip (known ED/ES)", style="dynamic", seed=0),
    # A video-kind corruption (seed 0 gives blank frames) to show what the unusual-input alert looks like.
    Example("phantom-damaged", "Damaged phantom clip (blank frames)", style="synthetic", seed=0, corrupt=1.0),
)}


class ExampleStore:
    """Generates each example once (atomically: a temp folder renamed into place) and reads it back."""

    def __init__(self, cache: str | os.PathLike | None = None, size: int = 112) -> None:
        self.cache = (Path(cache) if cache else cache_root()) / "viewer-examples"
        self.size = size
        self._lock = threading.Lock()

    def listing(self) -> list[dict[str, str]]:
        """Names and labels for the page's example menu."""
        return [{"name": e.name, "label": e.label} for e in EXAMPLES.values()]

    def folder(self, name: str) -> Path:
        """The generated dataset folder of one example (generated now if missing)."""
        if name not in EXAMPLES:
            raise EchoDFKDError(f"unknown example {name!r}; choose one of {sorted(EXAMPLES)}")
        ex = EXAMPLES[name]
        out = self.cache / f"{ex.name}-s{ex.seed}-{self.size}px"
        with self._lock:
            if not (out / "FileList.csv").exists():
                from echodfkd.data.phantom import generate_phantom

                self.cache.mkdir(parents=True, exist_ok=True)
                tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=self.cache))
                try:
                    generate_phantom(tmp / "data", videos=1, style=ex.style, seed=ex.seed,
                                     corrupt=ex.corrupt, size=self.size, workers=1)
                    os.replace(tmp / "data", out)
                finally:
                    shutil.rmtree(tmp, ignore_errors=True)
        return out

    def load(self, name: str) -> tuple[np.ndarray, float, str, dict[str, Any] | None]:
        """Frames, fps, file name and the phantom's ground truth (ED/ES frames, EF) of one example."""
        from echodfkd.io.video import read_video

        folder = self.folder(name)
        videos = sorted((folder / "Videos").glob("*.avi"))
        if not videos:
            raise EchoDFKDError(f"{folder}: example folder holds no video; delete it to regenerate")
        frames, fps = read_video(videos[0], strict=False)
        truth = None
        gt = folder / "GroundTruth" / f"{videos[0].stem}.npz"
        if gt.exists():
            with np.load(gt) as z:
                truth = {"ED": [int(f) for f in z["ed"]] if "ed" in z else [],
                         "ES": [int(f) for f in z["es"]] if "es" in z else [],
                         "ef": round(float(z["ef"]), 1) if "ef" in z else None}
        return frames, fps, videos[0].name, truth
