"""`echodfkd export RUN --onnx student.onnx`: export the streaming step and check it with ONNX Runtime."""

from __future__ import annotations

import argparse

NAME = "export"
HELP = "export a student's streaming step to ONNX and check it against PyTorch"
DESCRIPTION = (
    "Exports the student's one-frame step (frame + recurrent state in, logits + state out) to ONNX at a "
    "fixed frame size, then streams a phantom clip through both ONNX Runtime and PyTorch and prints the "
    "largest absolute difference of the logits. `echodfkd predict --backend onnx` uses the file "
    "(RUN/student.onnx by default).")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `echodfkd export`."""
    parser.add_argument("run", help="student run directory (config.json + model.safetensors)")
    parser.add_argument("--onnx", default=None, help="output file (default: RUN/student.onnx)")
    parser.add_argument("--size", type=int, default=None,
                        help="frame size of the graph (default: the run's infer_size, else 112)")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (>= 17)")
    parser.add_argument("--exporter", choices=("auto", "dynamo", "legacy"), default="auto",
                        help="torch exporter: dynamo needs onnxscript; auto falls back to legacy")
    parser.add_argument("--check-frames", type=int, default=32, help="frames of the parity-check clip (0: skip)")
    parser.add_argument("--tolerance", type=float, default=1e-3,
                        help="fail when the max abs logit difference exceeds this")


def run(args: argparse.Namespace) -> int:
    """Export, check, print."""
    from pathlib import Path

    import numpy as np

    from echodfkd.errors import ModelError
    from echodfkd.models.export import export_onnx
    from echodfkd.stream.onnx_check import check_onnx
    from echodfkd.stream.predictor import DEFAULT_SIZE, ONNX_NAME, load_run

    student, record, run_dir = load_run(args.run)
    size = args.size or record.model_size(DEFAULT_SIZE)
    out = Path(args.onnx) if args.onnx else Path(run_dir) / ONNX_NAME
    info = export_onnx(student, out, size=int(size), opset=args.opset, exporter=args.exporter,
                       config=record.to_dict())
    print(f"exported {out} ({info.exporter} exporter, opset {info.opset}, {info.size[1]}x{info.size[0]} "
          f"frames, {info.state_tensors} state tensors){'; ' + info.note if info.note else ''}")
    if args.check_frames > 0:
        frames, kind = _check_clip(args.check_frames, info.size)
        diff = check_onnx(out, student, frames)
        print(f"parity on a {len(frames)}-frame {kind} clip: max |onnxruntime - pytorch| logit = {diff:.3g}")
        if not np.isfinite(diff) or diff > args.tolerance:
            raise ModelError(f"{out}: ONNX output differs from PyTorch by {diff:.3g} (> {args.tolerance})")
    return 0


def _check_clip(frames: int, size: tuple[int, int]) -> tuple:
    """(frames, kind): a phantom clip at the graph's size, or random frames if the phantom cannot make one."""
    import numpy as np

    from echodfkd.io.video import resize_frames

    try:
        from echodfkd.data.phantom import make_clip

        clip = make_clip(seed=0, index=0, size=112, frames=max(frames, 32)).frames[:frames]
        return resize_frames(clip, size), "phantom"
    except Exception:  # the check must not depend on the phantom's internals
        return np.random.default_rng(0).integers(0, 256, size=(frames, *size), dtype=np.uint8), "random-noise"
