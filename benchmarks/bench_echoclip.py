"""Frames/s of the EchoCLIP image tower at 224x224: a tiny model and ConvNeXt-Base-sized random weights.

Usage: python benchmarks/bench_echoclip.py [--device cpu] [--precision fp32] [--convnext-frames 8] [--threads N]
Weights are random (nothing is downloaded): speed depends on the architecture, not on the values.
"ConvNeXt-Base" is open_clip's convnext_base_w forced to 224 px, the size EchoCLIP runs at. Also timed:
the validation transform (112x112 grayscale uint8 -> normalised 224x224 RGB tensor), which runs on CPU.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import open_clip
import torch

TINY = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 224, "patch_size": 32, "width": 64, "head_width": 64, "layers": 2},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 1, "layers": 1},
}


def build(name: str, device: str):
    """Random-weight open_clip model and its validation transform at 224 px."""
    model, _, preprocess = open_clip.create_model_and_transforms(name, device=device, force_image_size=224)
    return model.eval(), preprocess


def time_tower(model, images: torch.Tensor, batch: int, device: str, precision: str) -> float:
    """Frames/s of encode_image over `images` in batches of `batch` (after one warm-up batch)."""
    ctx = (torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
           if precision == "bf16" else contextlib.nullcontext())
    with torch.inference_mode(), ctx:
        model.encode_image(images[:batch].to(device))
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        start = time.perf_counter()
        for i in range(0, len(images), batch):
            model.encode_image(images[i:i + batch].to(device))
        if device.startswith("cuda"):
            torch.cuda.synchronize()
    return len(images) / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    ap.add_argument("--tiny-frames", type=int, default=64)
    ap.add_argument("--convnext-frames", type=int, default=8)
    ap.add_argument("--batch", type=int, default=8, help="batch size of the batched runs")
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    ap.add_argument("--json", action="store_true", help="print the results as JSON")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "bench-tiny-clip.json"
        cfg.write_text(json.dumps(TINY))
        open_clip.add_model_config(cfg)
        rows = []
        frames = np.random.default_rng(0).integers(0, 256, (max(args.tiny_frames, args.convnext_frames), 112, 112),
                                                   dtype=np.uint8)
        for label, name, n in (("tiny ViT (2 layers, width 64)", "bench-tiny-clip", args.tiny_frames),
                               ("ConvNeXt-Base (convnext_base_w @224)", "convnext_base_w", args.convnext_frames)):
            torch.manual_seed(0)
            model, preprocess = build(name, args.device)
            from PIL import Image
            t0 = time.perf_counter()
            images = torch.stack([preprocess(Image.fromarray(f).convert("RGB")) for f in frames[:n]])
            pre_fps = n / (time.perf_counter() - t0)
            params = sum(p.numel() for p in model.visual.parameters())
            single = time_tower(model, images[: max(2, n // 2)], 1, args.device, args.precision)
            batched = time_tower(model, images, args.batch, args.device, args.precision)
            rows.append({"model": label, "image_tower_params": params, "input": list(images.shape[1:]),
                         "frames": n, "batch": args.batch, "single_fps": single, "batch_fps": batched,
                         "preprocess_fps": pre_fps})
            del model
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"device {args.device}, precision {args.precision}, torch threads {torch.get_num_threads()}")
    print(f"{'image tower':38s} {'params':>10s} {'single f/s':>11s} {'batch f/s':>10s} {'preproc f/s':>12s}")
    for r in rows:
        print(f"{r['model']:38s} {r['image_tower_params'] / 1e6:9.2f}M {r['single_fps']:11.2f} "
              f"{r['batch_fps']:10.2f} {r['preprocess_fps']:12.1f}   (batch {r['batch']}, {r['frames']} frames)")


if __name__ == "__main__":
    main()
