"""`echodfkd bench`: student vs teacher inference speed and streaming memory, in one run on one clip."""

from __future__ import annotations

import argparse

NAME = "bench"
HELP = "benchmark student streaming/batch fps, ONNX Runtime, teacher fps and streaming memory"
DESCRIPTION = (
    "Measures, on the same phantom clip and in interleaved rounds: the student's streaming fps (reference "
    "Student.step, the fast engine in fp32 and bf16, the ahead-of-time compiled engine in fp32 and bf16, ONNX "
    "Runtime, the end-to-end predictor), its batch (whole-clip) fps, the DeepLabv3-ResNet50 teacher's fps and "
    "the ratio; the Dice of bf16 vs fp32 masks; then the peak-memory growth of streaming 100 vs 1,000 frames "
    "in fresh processes. Goals: >= 200 fps single stream on 2 cores, >= 20x the teacher, judged on the fastest "
    "variant whose masks stay within Dice 0.99 of fp32 (use --model RUN for a trained student: a random one "
    "gives a less meaningful Dice).")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of `echodfkd bench`."""
    parser.add_argument("--model", default=None, metavar="RUN", help="student run (default: random-init (4,1))")
    parser.add_argument("--frames", type=int, default=48, help="frames per streaming round")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved measurement rounds")
    parser.add_argument("--teacher-frames", type=int, default=8, help="frames per teacher round")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads (the goal is stated for 2 cores)")
    parser.add_argument("--size", type=int, default=112, help="frame size")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=True,
                        help="also time the ahead-of-time compiled engine (built once and cached; needs g++)")
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True,
                        help="also time bf16 engines and report their Dice vs fp32")
    parser.add_argument("--no-onnx", action="store_true", help="skip ONNX Runtime")
    parser.add_argument("--no-teacher", action="store_true", help="skip the teacher")
    parser.add_argument("--no-memory", action="store_true", help="skip the streaming-memory measurement")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")


def run(args: argparse.Namespace) -> int:
    """Run the benchmark and print a table (or JSON)."""
    import json

    from echodfkd.errors import EchoDFKDError
    from echodfkd.stream.bench import run_benchmark

    for name in ("frames", "rounds", "teacher_frames", "threads", "size"):
        if getattr(args, name) < 1:
            raise EchoDFKDError(f"--{name.replace('_', '-')} must be >= 1")
    res = run_benchmark(model=args.model, frames=args.frames, rounds=args.rounds,
                        teacher_frames=args.teacher_frames, threads=args.threads, onnx=not args.no_onnx,
                        compile=args.compile, bf16=args.bf16, memory=not args.no_memory,
                        teacher=not args.no_teacher, size=args.size)
    if args.json:
        print(json.dumps(res, indent=2))
        return 0
    print(f"clip: {res['clip']}; model: {res['model']} ({res['params']:,} params); threads {res['threads']}; "
          f"{res['rounds']} rounds; load average {res['load_average_before']} -> {res['load_average_after']}")
    ratio = res.get("ratio_vs_teacher_median", {})
    single = res.get("ratio_vs_teacher_single_frame_median", {})
    print(f"{'variant':36s} {'fps median':>10s} {'fps best':>9s} {'x teacher batch':>15s} {'x teacher 1-frame':>17s}")
    for k in res["fps_median"]:
        r = f"{ratio[k]:.1f}" if k in ratio else ""
        r1 = f"{single[k]:.1f}" if k in single else ""
        print(f"{k:36s} {res['fps_median'][k]:10.1f} {res['fps_best'][k]:9.1f} {r:>15s} {r1:>17s}")
    g = res["goals"]
    print(f"goal >= {g['student_fps_goal']:.0f} fps single stream ({g['variant']}): median "
          f"{g['student_fps_median']}, best {g['student_fps_best']} -> "
          f"{'met' if g['fps_goal_met_median'] else 'NOT met'} (median)")
    if "ratio_median" in g:
        print(f"goal >= {g['ratio_goal']:.0f}x the teacher (batched, its fastest): {g['ratio_median']}x -> "
              f"{'met' if g['ratio_goal_met'] else 'NOT met'}")
    for engine, d in res.get("bf16_dice_vs_fp32", {}).items():
        print(f"bf16 vs fp32 mask Dice on the clip ({engine} engine): {d} (counts if >= {g['bf16_min_dice']})")
    mem = res.get("memory")
    if mem:
        for n in (100, 1000):
            m = mem[n]
            print(f"streaming {n:5d} frames: " + (f"peak RSS {m['peak_rss_kb_after'] / 1024:.1f} MiB, growth "
                                                f"{m['growth_kb']} KiB" if "growth_kb" in m else m.get("error", "")))
        if "growth_difference_kb" in mem:
            print(f"peak-memory growth 1,000 vs 100 frames: {mem['growth_difference_kb']} KiB")
    for note in res["notes"]:
        print(f"note: {note}")
    return 0
