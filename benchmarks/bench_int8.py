"""int8 static quantisation of the streaming step, measured against the compiled fp32 and mixed engines.

`python benchmarks/bench_int8.py --student RUN [--model-size 112] [--rounds 5] [--json]` (needs torchao,
`pip install -e '.[int8]'`, and a C++ compiler). Issue 17 asked whether int8 static quantisation
through PyTorch 2 export quantisation (torchao's pt2e flow, X86 Inductor quantizer), calibrated on phantom
clips, gives a faster engine whose masks stay within Dice 0.995 of fp32 on real clips. This script builds
it in several recipes and measures, in one run:

- the worst-clip and mean Dice of each engine's binary masks (at the run's Dice threshold) vs the fp32
  engine's, streamed frame by frame with the state fed back, on the real clips `bench` checks
  (`../shared/fixtures`: the 3 echonet_dev clips, the real 112 px A4C clip, the 582 px export framed by the
  sector conversion), resized to the model size as `predict` resizes them;
- each engine's streaming fps (median of interleaved rounds), with the compiled fp32 and mixed engines
  (`echodfkd.models.compiled`) as references.

Recipes (every 2-D convolution int8 per output channel, its input uint8 per tensor; gates, cell state,
BatchNorm and logits fp32; calibration: 4 phantom clips of 40 frames streamed with the state fed back):
`whole` one convolution over concat(x, h) per layer and fp32 transposed decoder convolutions (the quantizer
leaves those alone); `split1` the first layer's frame and h parts apart (own scales); `split-all` every
layer split and the decoder in its sub-pixel form (plain convolutions, so int8 too). Observers: `histogram`
(the quantizer's default, clips outliers) and `minmax`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"
RECIPES = {"whole": {}, "split1": {"full_precision_inputs": 1},
           "split-all": {"full_precision_inputs": 99, "subpixel_decoder": True}}


def _quantized_step(student, size: int, recipe: dict, observer: str, calibration: list[np.ndarray]):
    """The int8 step of `student` (a torch.fx module with the streaming signature) and its zero state."""
    from dataclasses import replace

    import torch
    import torch.nn.functional as F
    from torchao.quantization.pt2e.observer import MinMaxObserver
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as xiq

    from echodfkd.models.fast import StreamingStudent

    engine = StreamingStudent(student, **recipe).eval()
    state = engine.init_state(1, size, size).flat()
    config = xiq.get_default_x86_inductor_quantization_config()
    if observer == "minmax":
        act = replace(config.input_activation, observer_or_fake_quant_ctr=MinMaxObserver.with_args(eps=2 ** -12))
        config = type(config)(act, config.output_activation, config.weight, config.bias, config.is_qat)
    quantizer = xiq.X86InductorQuantizer()
    quantizer.set_function_type_qconfig(F.conv2d, config)  # convolutions only: the gate maths stays fp32
    example = (torch.full((1, 1, size, size), 64.0), *state)
    with torch.no_grad():
        # strict: the quantizer finds convolutions by their source function, which only strict export records
        observed = prepare_pt2e(torch.export.export(engine, example, strict=True).module(), quantizer)
        for clip in calibration:
            _stream(observed, state, clip)
        return convert_pt2e(observed), state


def _stream(step, state, clip: np.ndarray, threshold_logit: float | None = None):
    """Stream a clip through `step(frame, *state)`; binary masks (T, H, W) when `threshold_logit` is given."""
    import torch

    s, masks = list(state), []
    with torch.no_grad():
        for f in clip:
            out = step(torch.from_numpy(np.ascontiguousarray(f)).float()[None, None], *s)
            s = list(out[1:])
            if threshold_logit is not None:
                masks.append((out[0][0, 0] >= threshold_logit).numpy())
    return np.stack(masks) if masks else None


def _flat_step(engine):
    """`engine.step(frame, state)` as `step(frame, *state) -> (logits, *state)`, the quantised steps' signature."""
    def step(frame, *state):
        logits, new = engine.step(frame, list(state))
        return (logits, *new)
    return step


def _build(module, example, path: Path):
    import torch

    from echodfkd.models.compiled import INDUCTOR_OPTIONS

    with torch.no_grad():
        program = torch.export.export(module, example)
        torch._inductor.aoti_compile_and_package(program, package_path=str(path),
                                                 inductor_configs=dict(INDUCTOR_OPTIONS))
    return torch._inductor.aoti_load_package(str(path))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--student", required=True, help="a trained student run (e.g. demo_out/student)")
    p.add_argument("--model-size", type=int, default=None, help="default: the run's infer_size")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--frames", type=int, default=200, help="frames per timing round")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--recipes", default=",".join(RECIPES))
    p.add_argument("--observers", default="histogram,minmax")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    try:
        import torchao  # noqa: F401
    except ImportError:
        print("bench_int8: needs torchao (pip install -e '.[int8]')", file=sys.stderr)
        return 2
    import tempfile

    import torch

    from echodfkd.data.phantom import make_clip
    from echodfkd.io.video import resize_frames
    from echodfkd.models.compiled import find_compiler, load_or_compile
    from echodfkd.stream.bench import _check_sources
    from echodfkd.stream.predictor import load_run

    if find_compiler() is None:
        print("bench_int8: needs a C++ compiler (g++) for AOTInductor", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    student, record, _ = load_run(args.student)
    size = int(args.model_size or record.model_size(112))
    t = float((record.thresholds.to_dict() if record.thresholds else {}).get("dice", 0.5))
    logit = float(np.log(t / (1 - t)))
    if not (FIXTURES / "echonet_dev").is_dir():
        print(f"bench_int8: the real clips are missing ({FIXTURES})", file=sys.stderr)
        return 2
    clips = [(n, resize_frames(c, size)) for n, c in _check_sources([str(FIXTURES / "echonet_dev"), str(FIXTURES)])]
    calibration = [resize_frames(make_clip(seed=1000 + i, index=i, size=112, frames=40).frames, size) for i in range(4)]
    steps = {}
    for prec in ("fp32", "mixed"):
        eng = load_or_compile(student, (size, size), prec)
        steps[f"compiled {prec}"] = (_flat_step(eng), eng.init_state())
    with tempfile.TemporaryDirectory() as tmp:
        for recipe in args.recipes.split(","):
            for obs in args.observers.split(","):
                module, state = _quantized_step(student, size, RECIPES[recipe], obs, calibration)
                run = _build(module, (torch.zeros(1, 1, size, size), *state), Path(tmp) / f"{recipe}-{obs}.pt2")
                steps[f"int8 {recipe} {obs}"] = (run, state)
        ref = {n: _stream(*steps["compiled fp32"], c, logit) for n, c in clips}
        rows = {}
        for name, (step, state) in steps.items():
            d = []
            for n, c in clips:
                m = _stream(step, state, c, logit)
                d.append(2 * (m & ref[n]).sum() / max(m.sum() + ref[n].sum(), 1))
            rows[name] = {"dice_min": round(float(min(d)), 4), "dice_mean": round(float(np.mean(d)), 4), "fps": []}
        frames = resize_frames(make_clip(seed=0, index=0, size=112, frames=48).frames, size)
        frames = np.concatenate([frames] * (args.frames // len(frames) + 1))[:args.frames]
        load = [Path("/proc/loadavg").read_text().split()[0]]
        for _ in range(args.rounds):  # interleaved: a busy moment slows every engine alike
            for name, (step, state) in steps.items():
                t0 = time.perf_counter()
                _stream(step, state, frames)
                rows[name]["fps"].append(len(frames) / (time.perf_counter() - t0))
        load.append(Path("/proc/loadavg").read_text().split()[0])
    mixed = statistics.median(rows["compiled mixed"]["fps"])
    for r in rows.values():
        r["fps"] = round(statistics.median(r["fps"]), 1)
        r["x_mixed"] = round(r["fps"] / mixed, 2)
    result = {"student": args.student, "model_size": size, "threads": args.threads, "rounds": args.rounds,
              "load_average": load, "clips": [n for n, _ in clips], "dice_threshold": t, "engines": rows}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{args.student} at {size} px, {args.threads} threads, median of {args.rounds} rounds, load {load}")
    print(f"masks vs compiled fp32 on {len(clips)} real clips (threshold {t:.2f})")
    print(f"{'engine':28s} {'worst Dice':>10s} {'mean Dice':>10s} {'fps':>8s} {'x mixed':>8s}")
    for name, r in rows.items():
        print(f"{name:28s} {r['dice_min']:10.4f} {r['dice_mean']:10.4f} {r['fps']:8.0f} {r['x_mixed']:8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
