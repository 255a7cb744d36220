"""`echodfkd export --student RUN [--out DIR]`: export the streaming step and check it with ONNX Runtime."""

from __future__ import annotations

import argparse

from echodfkd.commands import _flags

NAME = "export"
HELP = "export a student's streaming step to ONNX and check it against PyTorch"
DESCRIPTION = (
    "Exports the student's one-frame step (frame + recurrent state in, logits + state out) to ONNX at a "
    "fixed frame size, then streams a phantom clip through both ONNX Runtime and PyTorch and prints the "
    "largest absolute difference of the logits. `echodfkd predict --backend onnx` uses the file "
    "(RUN/student.onnx by default; --out DIR writes DIR/student.onnx).")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `echodfkd export`."""
    _flags.add_student(parser, required=False)
    _flags.add_deprecated_positional(parser, "student", "--student", "RUN")
    _flags.add_out(parser, "output", required=False, note="writes DIR/student.onnx; default: the run folder")
    _flags.add_deprecated(parser, "--onnx", "--out DIR", "onnx_file", metavar="FILE")
    parser.add_argument("--size", type=_flags.frame_size, default=None,
                        help="frame size of the graph (default: the run's infer_size, else 112)")
    parser.add_argument("--opset", type=_flags.int_in(17, 99), default=17, help="ONNX opset (>= 17)")
    parser.add_argument("--exporter", choices=("auto", "dynamo", "legacy"), default="auto",
                        help="torch exporter: dynamo needs onnxscript; auto falls back to legacy")
    parser.add_argument("--check-frames", type=_flags.nonnegative_int, default=32,
                        help="frames of the parity-check clip (0: skip)")
    parser.add_argument("--tolerance", type=_flags.positive_float, default=1e-3,
                        help="fail when the max abs logit difference exceeds this (nothing is kept then)")
    _flags.add_json(parser)


def run(args: argparse.Namespace) -> int:
    """Export to a temporary file, check it, and only then put it in place; print (or --json) the result."""
    import json
    from pathlib import Path

    import numpy as np

    from echodfkd.errors import ModelError
    from echodfkd.io.atomic import atomic_path
    from echodfkd.models.export import export_onnx
    from echodfkd.stream.onnx_check import check_onnx
    from echodfkd.stream.predictor import DEFAULT_SIZE, ONNX_NAME, load_run

    _flags.require(args, "student", "--student")
    onnx_file = getattr(args, "onnx_file", None)
    if onnx_file and args.out:
        raise ModelError("--onnx (deprecated) and --out both name the output; give --out DIR only")
    if onnx_file:
        out = _flags.check_file_target(onnx_file, "--onnx")
    elif args.out:
        out = _flags.check_writable_dir(args.out) / ONNX_NAME
    else:
        out = _flags.check_writable_dir(args.student) / ONNX_NAME
    student, record, run_dir = load_run(args.student)
    size = args.size or record.model_size(DEFAULT_SIZE)
    _flags.check_size(size, student.blocks)
    row: dict = {"out": str(out)}
    with atomic_path(out) as tmp:  # a graph that fails the parity check is not kept
        info = export_onnx(student, tmp, size=int(size), opset=args.opset, exporter=args.exporter,
                           config=record.to_dict())
        row.update(exporter=info.exporter, opset=info.opset, size=list(info.size), state_tensors=info.state_tensors,
                   note=info.note or None)
        if not args.json:
            print(f"exported {out} ({info.exporter} exporter, opset {info.opset}, {info.size[1]}x{info.size[0]} "
                  f"frames, {info.state_tensors} state tensors){'; ' + info.note if info.note else ''}")
        if args.check_frames > 0:
            frames, kind = _check_clip(args.check_frames, info.size)
            diff = check_onnx(tmp, student, frames)
            row.update(parity_clip=kind, parity_frames=len(frames), max_abs_logit_diff=float(diff))
            if not args.json:
                print(f"parity on a {len(frames)}-frame {kind} clip: max |onnxruntime - pytorch| logit = {diff:.3g}")
            if not np.isfinite(diff) or diff > args.tolerance:
                raise ModelError(f"{out}: ONNX output differs from PyTorch by {diff:.3g} (> {args.tolerance}); "
                                 "not written")
    if args.json:
        print(json.dumps(row, indent=2))
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
