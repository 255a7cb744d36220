"""The `echodfkd reproduce --dry-run` plan at full size, without the datasets: what docs/real-data.md quotes.

Usage: python benchmarks/full_size_plan.py [--grid 1-4x1-4] [--epochs 400] [--echoclip] [--json]

Builds stand-in folders in a temporary directory: EchoNet-Dynamic from the real FileList
(../shared/fixtures/echonet_dynamic_FileList.csv, 10,030 clips, with a two-frame tracing for every clip
except the six 768x1024 ones, as in the real VolumeTracings.csv) and EchoNet-Synthetic as 10,030 rows with
the same split sizes (its videos are absent, so 192 frames per clip are counted, the release's length),
plus a randomly initialised DeepLabv3-ResNet50 in EchoNet's checkpoint format. Then it prints the plan
with the reference throughputs (`echodfkd.reproduce.throughput.REFERENCE`). No video is read or written.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

FILELIST = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "echonet_dynamic_FileList.csv"


def stand_ins(root: Path, filelist: Path) -> tuple[Path, Path, Path]:
    """Dynamic and synthetic stand-in folders and an EchoNet-format teacher checkpoint."""
    import torch

    from echodfkd.teacher.model import build_segmenter, save_echonet_checkpoint

    real = pd.read_csv(filelist)
    dyn = root / "EchoNet-Dynamic"
    (dyn / "Videos").mkdir(parents=True)
    real.to_csv(dyn / "FileList.csv", index=False)
    traced = real[(real["FrameHeight"] == 112) & (real["FrameWidth"] == 112)]["FileName"]
    chord = np.column_stack([np.full(21, 40.0), np.linspace(30, 80, 21), np.full(21, 70.0), np.linspace(30, 80, 21)])
    rows = [[f"{n}.avi", *c, frame] for n in traced for frame, scale in ((10, 1.0), (30, 0.8))
            for c in chord * [1, 1, scale, 1]]
    pd.DataFrame(rows, columns=["FileName", "X1", "Y1", "X2", "Y2", "Frame"]).to_csv(dyn / "VolumeTracings.csv",
                                                                                     index=False)
    syn = root / "EchoNet-Synthetic"
    (syn / "Videos").mkdir(parents=True)
    pd.DataFrame({"FileName": [f"sample_{i:06d}" for i in range(len(real))], "EF": 50, "ESV": 0.0, "EDV": 0.0,
                  "FrameHeight": 112, "FrameWidth": 112, "FPS": 32, "NumberOfFrames": 192,
                  "Split": real["Split"].to_numpy()}).to_csv(syn / "FileList.csv", index=False)
    torch.manual_seed(0)
    teacher = save_echonet_checkpoint(build_segmenter("deeplabv3_resnet50"), root / "deeplabv3_resnet50_random.pt")
    return dyn, syn, teacher


def main() -> None:
    """Build the stand-ins and print the plan."""
    from echodfkd.reproduce import Settings, parse_grid, plan

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--filelist", default=str(FILELIST))
    ap.add_argument("--grid", default="1-4x1-4")
    ap.add_argument("--epochs", type=int, default=400)
    ap.add_argument("--echoclip", action="store_true", help="include the EchoCLIP step")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--markdown", action="store_true",
                    help="a Markdown table with the per-config predict/evaluate steps summed (docs/real-data.md)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        dyn, syn, teacher = stand_ins(Path(tmp), Path(args.filelist))
        st = Settings(dynamic=dyn, synthetic=syn, teacher=teacher, out=Path(tmp) / "out", grid=parse_grid(args.grid),
                      epochs=args.epochs, echoclip="hf-hub:mkaichristensen/echo-clip" if args.echoclip else None,
                      workers=8)
        p = plan(st)
        p.notes = [n for n in p.notes if "EchoCLIP" not in n]  # the stand-in machine has no Hugging Face cache
        if args.json:
            print(json.dumps(p.as_dict(), indent=1))
        elif args.markdown:
            print(markdown(p))
        else:
            print(p.format())


def markdown(p) -> str:
    """The plan as a Markdown table: distillations one row each, predictions and evaluations summed."""
    from echodfkd.reproduce.estimate import _bytes, _duration, _tmac

    groups: dict[str, list] = {}
    for s in p.steps:
        kind = s.name.split("-")[0]
        count = sum(x.name.startswith(kind + "-") for x in p.steps)
        label = f"{kind}-* ({count} steps)" if kind in ("predict", "evaluate") else s.name
        groups.setdefault(label, []).append(s)
    rows = ["| step | clips | frames | TMAC | time on the reference core | disk |", "|---|---|---|---|---|---|"]
    for label, steps in groups.items():
        seconds = [s.seconds for s in steps]
        tmac = sum(s.tmac or 0 for s in steps)
        took = _duration(None if None in seconds else sum(seconds))
        rows.append(f"| {label} | {steps[0].clips:,} | {sum(s.frames for s in steps):,} | {_tmac(tmac)} | {took} | "
                    f"{_bytes(sum(s.disk_bytes for s in steps))} |")
    t = p.totals()
    rows.append(f"| **total** | | | {_tmac(t['tmac'])} | {_duration(t['seconds'])} | {_bytes(t['disk_bytes'])} |")
    return "\n".join(rows)


if __name__ == "__main__":
    main()
