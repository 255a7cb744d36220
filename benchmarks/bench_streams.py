"""Many streams at once: aggregate frames/s and each stream's p50/p99 latency for N streams, beside one stream.

`python benchmarks/bench_streams.py [--model RUN] [--streams 1,4,16,64] [--threads 2] [--json]`

Every stream is its own 112x112 phantom clip. In one process, in interleaved rounds (every variant once per
round, so a busy machine slows all alike), it measures:
- `single`: the single-stream engine (`TorchEngine.step`, one clip after another), and the single-stream
  `Predictor` (frames in, masks/areas/alert statistics out);
- `engine N`: N streams through one `BatchedEngine` step per frame (the network only);
- `predict N`: N streams, one thread each, through `MultiStream` and `stream_predictor` (what `serve` and
  `predict --streams N` run: the per-frame work after the network included, done by the scheduler thread
  for the whole batch between steps). Latency is each frame's `FrameResult.latency_ms`, from its arrival
  to its finished masks (waiting for the batched step included);
- `predict-overlap N`: the same, finished by a post-processing thread while the network steps the next
  batch (`overlap=True`);
- `predict-thr N`: the same, but each stream thread does its own per-frame work (`post_in_scheduler=False`,
  the way before batched post-processing);
- `predict-after-peak N`: `predict N` on a scheduler whose engine first held `--peak` streams (64), as a
  server's does after a busy moment (its state shrinks back when streams leave).
The figures are medians over rounds; ratios are to the single-stream figure and to the network alone
(`engine`, same layout and N) of the same round; CPU ms/frame is the whole process's CPU time per frame.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from typing import Any

import numpy as np

GOAL_AGGREGATE = 1500.0  # issue 17: frames/s at N = 16
GOAL_STREAM_FPS = 50.0  # every stream real time
VARIANTS = ("engine", "predict", "predict-overlap", "predict-thr", "predict-after-peak")


def _clips(n: int, frames: int, size: int) -> list[np.ndarray]:
    from echodfkd.data.phantom import make_clip

    # the phantom needs a whole beat: short clips are cut from longer ones
    base = [make_clip(seed=5, index=i, size=size, frames=max(frames, 40)).frames[:frames] for i in range(min(n, 8))]
    return [base[i % len(base)] for i in range(n)]  # phantom clips cost seconds each; streams stay independent


def _pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else float("nan")


def _single(predictor: Any, clips: list[np.ndarray]) -> dict[str, float]:
    """The single-stream engine and predictor on the first clip."""
    import cv2

    clip = clips[0]
    small = np.stack([cv2.resize(f, predictor.size[::-1], interpolation=cv2.INTER_AREA) for f in clip]) \
        if clip.shape[1:] != predictor.size else clip
    engine = predictor.engine  # the single-stream engine itself (compiled too with --compile)
    engine.reset()
    t0 = time.perf_counter()
    lat = []
    for f in small.astype(np.float32):
        t = time.perf_counter()
        engine.step(f)
        lat.append((time.perf_counter() - t) * 1000)
    engine_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = list(predictor.stream_clip(clip))
    pred_s = time.perf_counter() - t0
    plat = [r.latency_ms for r in res]
    return {"engine_fps": len(small) / engine_s, "engine_p50_ms": _pct(lat, 50), "engine_p99_ms": _pct(lat, 99),
            "predict_fps": len(res) / pred_s, "predict_p50_ms": _pct(plat, 50), "predict_p99_ms": _pct(plat, 99)}


def _engine_n(predictor: Any, clips: list[np.ndarray], batched: Any) -> dict[str, float]:
    """N streams stepping together through the batched engine, one step per frame."""
    import cv2

    n = len(clips)
    small = np.stack([[cv2.resize(f, predictor.size[::-1], interpolation=cv2.INTER_AREA) for f in c]
                      for c in clips]).astype(np.float32) if clips[0].shape[1:] != predictor.size else \
        np.stack(clips).astype(np.float32)
    slots = [batched.open() for _ in range(n)]
    lat = []
    cpu, t0 = time.process_time(), time.perf_counter()
    for j in range(small.shape[1]):
        t = time.perf_counter()
        batched.step(slots, small[:, j])
        lat.append((time.perf_counter() - t) * 1000)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu
    for s in slots:
        batched.close(s)
    frames = n * small.shape[1]
    return {"aggregate_fps": frames / wall, "stream_fps_min": small.shape[1] / wall, "cpu_ms": 1000 * cpu / frames,
            "p50_ms": _pct(lat, 50), "p99_ms": _pct(lat, 99)}


def _predict_n(predictor: Any, clips: list[np.ndarray], multi: Any) -> dict[str, float]:
    """N streams, one thread each, through the scheduler: the whole per-frame pipeline."""
    from echodfkd.stream.multistream import stream_predictor

    n = len(clips)
    lat: dict[int, list[float]] = {}
    span: dict[int, float] = {}
    start = threading.Barrier(n + 1)

    def one(i: int) -> None:
        handle = multi.open()
        p = stream_predictor(predictor, handle)
        start.wait()
        t = time.perf_counter()
        lat[i] = [r.latency_ms for r in p.stream_clip(clips[i])]
        span[i] = time.perf_counter() - t
        handle.close()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    multi.batch_sizes.clear()
    start.wait()
    cpu, t0 = time.process_time(), time.perf_counter()
    for t in threads:
        t.join()
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu
    frames = sum(len(v) for v in lat.values())
    every = [x for v in lat.values() for x in v]
    p99s = [_pct(v, 99) for v in lat.values()]
    return {"aggregate_fps": frames / wall, "stream_fps_min": min(len(lat[i]) / span[i] for i in lat),
            "cpu_ms": 1000 * cpu / frames,
            "p50_ms": _pct(every, 50), "p99_ms": _pct(every, 99), "worst_stream_p99_ms": max(p99s),
            "mean_batch": float(np.mean(multi.batch_sizes)) if multi.batch_sizes else float("nan")}


def _layouts(text: str) -> list[tuple[int | None, int]]:
    """'all,c4w2,c0w2' -> [(None, 1), (4, 2), (None, 2)]: (chunk, workers) of `BatchedEngine`."""
    out = []
    for item in text.split(","):
        if item == "all":
            out.append((None, 1))
            continue
        c, w = item.lstrip("c").split("w")
        out.append((int(c) or None, int(w)))
    return out


def _name(layout: tuple[int | None, int]) -> str:
    chunk, workers = layout
    return "all" if layout == (None, 1) else f"c{chunk or 0}w{workers}"


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every variant once per round, `args.rounds` rounds; medians and same-round ratios."""
    import torch

    from echodfkd.stream import Predictor
    from echodfkd.stream.multistream import MultiStream

    import os

    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()[0]
    predictor = Predictor(args.model, size=args.size, precision=args.precision, compile=args.compile)
    ns = [int(x) for x in args.streams.split(",")]
    clips = _clips(max(ns), args.frames, args.input)
    layouts = _layouts(args.layouts)
    variants = args.variants.split(",")
    # One scheduler and engine per layout and N, as a server with N streams has: an engine that once held
    # more streams keeps their rows, and a step of fewer rows then gathers and scatters its state.
    multis = {(lay, n): MultiStream.from_predictor(predictor, args.max_wait_ms, chunk=lay[0], workers=lay[1])
              for lay in layouts for n in ns}
    others = {("predict-overlap", key): MultiStream(m.engine, args.max_wait_ms, overlap=True)
              for key, m in multis.items()}
    others.update({("predict-thr", key): MultiStream(m.engine, args.max_wait_ms, post_in_scheduler=False)
                   for key, m in multis.items()})
    for (_, n), m in multis.items():
        m.engine.prepare([n])
    if "predict-after-peak" in variants:  # engines that held --peak streams for a few frames first
        for lay, n in multis:
            peaked = MultiStream.from_predictor(predictor, args.max_wait_ms, chunk=lay[0], workers=lay[1])
            peaked.engine.prepare([args.peak, n])
            _predict_n(predictor, [clips[i % len(clips)][:4] for i in range(args.peak)], peaked)
            others[("predict-after-peak", (lay, n))] = peaked
    rounds: list[dict[str, Any]] = []
    for k in range(args.rounds + 1):  # a short first round warms every variant up and is dropped
        use = [c[:6] for c in clips] if k == 0 else clips
        r: dict[str, Any] = {"single": _single(predictor, use)}
        for n in ns:
            for lay in layouts:
                multi = multis[(lay, n)]
                for kind in variants:
                    r[f"{kind} {_name(lay)} {n}"] = (_engine_n(predictor, use[:n], multi.engine) if kind == "engine"
                                                     else _predict_n(predictor, use[:n],
                                                                     others.get((kind, (lay, n)), multi)))
        if k:
            rounds.append(r)
            print(f"round {k}/{args.rounds} done", file=sys.stderr, flush=True)
    for m in [*multis.values(), *others.values()]:
        m.shutdown()

    def med(variant: str, key: str) -> float:
        return statistics.median(r[variant][key] for r in rounds)

    rows = []
    for n in ns:
        for lay, kind in [(lay, k) for lay in layouts for k in variants]:
            base = "engine_fps" if kind == "engine" else "predict_fps"
            v = f"{kind} {_name(lay)} {n}"
            rows.append({"variant": kind, "layout": _name(lay), "streams": n, "aggregate_fps": round(med(v, "aggregate_fps"), 1),
                         "stream_fps_min": round(med(v, "stream_fps_min"), 1),
                         "p50_ms": round(med(v, "p50_ms"), 2), "p99_ms": round(med(v, "p99_ms"), 2),
                         "cpu_ms_per_frame": round(med(v, "cpu_ms"), 3),
                         "per_round_fps": [round(r[v]["aggregate_fps"], 1) for r in rounds],
                         "per_round_cpu_ms": [round(r[v]["cpu_ms"], 3) for r in rounds],
                         "ratio_to_engine": round(statistics.median(
                             r[v]["aggregate_fps"] / r[f"engine {_name(lay)} {n}"]["aggregate_fps"] for r in rounds), 3)
                         if "engine" in variants else None,
                         "ratio_to_single": round(statistics.median(
                             r[v]["aggregate_fps"] / r["single"][base] for r in rounds), 2)})
    single = {k: round(med("single", k), 2) for k in rounds[0]["single"]}

    return {"model": str(args.model), "model_size": list(predictor.size), "input_size": [args.input] * 2,
            "precision": args.precision, "compiled": bool(args.compile), "threads": args.threads,
            "frames_per_stream": args.frames, "rounds": args.rounds, "max_wait_ms": args.max_wait_ms,
            "load_avg": os.getloadavg()[0], "load_avg_start": load_start, "single": single, "rows": rows,
            "goal": {"aggregate_fps_at_16": GOAL_AGGREGATE, "stream_fps": GOAL_STREAM_FPS}}


def _print(result: dict[str, Any]) -> None:
    s = result["single"]
    print(f"model {result['model']} at {result['model_size'][0]}x{result['model_size'][1]} "
          f"(input {result['input_size'][0]}x{result['input_size'][1]}), {result['precision']}"
          f"{' compiled' if result['compiled'] else ' eager'}, {result['threads']} threads, "
          f"{result['frames_per_stream']} frames per stream, median of {result['rounds']} rounds "
          f"(load average {result['load_avg_start']:.1f} at the start, {result['load_avg']:.1f} at the end)")
    print(f"single stream: engine {s['engine_fps']:.0f} fps (p50 {s['engine_p50_ms']:.2f} ms, p99 "
          f"{s['engine_p99_ms']:.2f} ms); predictor {s['predict_fps']:.0f} fps (p50 {s['predict_p50_ms']:.2f} ms, "
          f"p99 {s['predict_p99_ms']:.2f} ms)")
    print(f"{'variant':<14} {'layout':<12} {'N':>4} {'frames/s':>10} {'x single':>9} {'x engine':>9} "
          f"{'min stream fps':>15} {'p50 ms':>8} {'p99 ms':>8} {'CPU ms/frame':>13}")
    for r in result["rows"]:
        print(f"{r['variant']:<14} {r['layout']:<12} {r['streams']:>4} {r['aggregate_fps']:>10.0f} "
              f"{r['ratio_to_single']:>9.2f} {r['ratio_to_engine'] if r['ratio_to_engine'] is not None else '-':>9} "
              f"{r['stream_fps_min']:>15.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['cpu_ms_per_frame']:>13.3f}")
    at16 = [r for r in result["rows"] if r["streams"] == 16 and r["variant"] == "predict"]
    if at16:
        r = max(at16, key=lambda row: row["aggregate_fps"])
        ok = r["aggregate_fps"] >= GOAL_AGGREGATE and r["stream_fps_min"] >= GOAL_STREAM_FPS
        print(f"goal (N=16, whole pipeline): >= {GOAL_AGGREGATE:.0f} frames/s and every stream >= "
              f"{GOAL_STREAM_FPS:.0f} fps: {'met' if ok else 'NOT met'} ({r['aggregate_fps']:.0f} frames/s, "
              f"slowest stream {r['stream_fps_min']:.0f} fps, p99 {r['p99_ms']:.1f} ms, layout {r['layout']})")


def main(argv: list[str] | None = None) -> int:
    """Parse the options, run the benchmark, print a table (or --json)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="/tmp/demo_final/student", help="student run (default: the demo's)")
    p.add_argument("--streams", default="1,4,16,64", help="comma list of stream counts")
    p.add_argument("--frames", type=int, default=48, help="frames per stream and round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--input", type=int, default=112, help="input frame size (phantom clips)")
    p.add_argument("--size", type=int, default=None, help="model frame size (default: the run's infer_size)")
    p.add_argument("--precision", default="fp32", help="engine precision (stream.engines.PRECISIONS)")
    p.add_argument("--compile", action="store_true", help="the ahead-of-time compiled engine, one per batch bucket")
    p.add_argument("--layouts", default="all,c4w2",
                   help="batched-step layouts, comma list: 'all' (one call of every ready stream) or cCwW (calls "
                        "of at most C streams on W threads of one intra-op thread each; C=0: n/W streams)")
    p.add_argument("--variants", default=",".join(VARIANTS),
                   help=f"comma list of what to measure per layout and N, of {','.join(VARIANTS)}")
    p.add_argument("--max-wait-ms", type=float, default=5.0, help="scheduler wait for stragglers")
    p.add_argument("--peak", type=int, default=64, help="streams the after-peak engines held first")
    p.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = p.parse_args(argv)
    if args.frames < 2 or args.rounds < 1 or args.threads < 1:
        p.error("--frames must be >= 2, --rounds and --threads >= 1")
    if not set(args.variants.split(",")) <= set(VARIANTS):
        p.error(f"--variants must list some of {','.join(VARIANTS)}, got {args.variants!r}")
    try:
        ns = [int(x) for x in args.streams.split(",")]
    except ValueError:
        p.error(f"--streams must be a comma list of whole numbers, got {args.streams!r}")
    if not ns or min(ns) < 1:
        p.error(f"--streams must list numbers >= 1, got {args.streams!r}")
    from echodfkd.errors import EchoDFKDError

    try:
        result = run(args)
    except EchoDFKDError as exc:
        print(f"bench_streams: error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _print(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
