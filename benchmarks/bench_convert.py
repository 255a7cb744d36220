"""Conversion speed (frames/s) on the real 582-px scanner export, and EchoNet's framing measured on the
real 112-px clips (the constants in echodfkd.data.sector).

    python benchmarks/bench_convert.py [--repeats 5] [--framing] [--overlay OUT.png]

Speed: decode + sector + blank/crop/resize (`prepare_clip`), and the same plus writing the AVI
(`convert`), timed separately; best and median of the repeats. --framing fits the sector on the
112-px fixture clips and prints where EchoNet's crop puts it (first imaged row, fitted apex, imaged
depth, each as a fraction of the side), which is what SIDE_PER_DEPTH / TOP_MARGIN / APEX_X encode.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO.parent / "shared" / "fixtures"
CLIP = FIXTURES / "a4c_582x582_30fps_ecg.mp4"


def speed(repeats: int) -> dict:
    """Frames per second of the in-memory conversion and of a full `convert` of the 582-px clip."""
    from echodfkd.data.convert import prepare_clip
    from echodfkd.data.convert_folder import convert_sources
    from echodfkd.io.video import read_video

    t0 = time.perf_counter()
    frames, _ = read_video(CLIP)
    decode_s = time.perf_counter() - t0
    n = len(frames)
    prepare, full = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        prepare_clip(CLIP)
        prepare.append(time.perf_counter() - t0)
        with tempfile.TemporaryDirectory() as out:
            t0 = time.perf_counter()
            convert_sources([CLIP], out, echo=lambda _line: None)
            full.append(time.perf_counter() - t0)
    return {"clip": CLIP.name, "frames": n, "size": list(frames.shape[1:]), "repeats": repeats,
            "decode_only_fps": round(n / decode_s, 1),
            "prepare_fps_best": round(n / min(prepare), 1), "prepare_fps_median": round(n / statistics.median(prepare), 1),
            "convert_fps_best": round(n / min(full), 1), "convert_fps_median": round(n / statistics.median(full), 1)}


def framing() -> dict:
    """Where the fitted sector lies in the real 112-px clips, as fractions of the frame side."""
    from echodfkd.data.sector import fit_fan, sector_mask
    from echodfkd.io.video import read_video

    paths = sorted((FIXTURES / "echonet_dev" / "Videos").glob("*.avi")) + [FIXTURES / "a4c_112x112_50fps.avi"]
    rows = []
    for p in paths:
        frames, _ = read_video(p)
        mask = sector_mask(frames)
        fan = fit_fan(mask)
        side = frames.shape[1]
        top = int(np.flatnonzero(mask.any(axis=1))[0])
        rows.append({"clip": p.name, "top": top / side, "apex_x": fan["apex_x"] / side,
                     "apex_y": fan["apex_y"] / side, "radius": fan["radius"] / side,
                     "depth": (fan["apex_y"] + fan["radius"] - top) / side})
    summary = {k: {"mean": round(float(np.mean([r[k] for r in rows])), 4),
                   "median": round(float(np.median([r[k] for r in rows])), 4),
                   "min": round(min(r[k] for r in rows), 4), "max": round(max(r[k] for r in rows), 4)}
               for k in ("top", "apex_x", "apex_y", "radius", "depth")}
    return {"clips": [{k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()} for r in rows],
            "summary": summary}


def save_overlay(path: Path) -> dict:
    """The sector found on the 582-px clip drawn over its brightest-over-time frame (outside tinted)."""
    import cv2

    from echodfkd.data.sector import find_sector, overlay
    from echodfkd.io.video import read_video

    frames, _ = read_video(CLIP)
    mask, g = find_sector(frames)
    cv2.imwrite(str(path), cv2.cvtColor(overlay(frames.max(axis=0), mask, g), cv2.COLOR_RGB2BGR))
    return g.to_dict()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--framing", action="store_true", help="also measure EchoNet's framing on the 112-px clips")
    parser.add_argument("--overlay", type=Path, default=None, help="write the 582-px clip's sector overlay PNG here")
    args = parser.parse_args()
    if not CLIP.is_file():
        print(f"{CLIP} is absent; nothing to measure", file=sys.stderr)
        return 2
    result = {"speed": speed(args.repeats)}
    if args.framing:
        result["framing"] = framing()
    if args.overlay:
        result["overlay"] = {"path": str(args.overlay), "geometry": save_overlay(args.overlay)}
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
