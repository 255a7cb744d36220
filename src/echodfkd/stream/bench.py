"""Inference benchmark: student streaming/batch fps vs the DeepLabv3 teacher, and streaming memory.

Everything runs in one process on the same phantom clip, in interleaved rounds (every variant once per
round), so a busy machine slows all variants alike (though not equally: see the busy-machine note):
ratios are taken within a round, and the median and best round are both reported. The teacher sees the
clip's frames; the student runs at its run's infer_size, as `predict` runs it, each frame resized inside
the timed step. Reduced precisions (mixed, bf16) count towards the goals only if their masks stay within
Dice 0.995 of fp32's on every checked clip (`echodfkd.stream.precision`). Streaming memory is measured in
fresh child processes (peak RSS, VmHWM, growth while streaming 100 vs 1,000 frames from a frame
generator, results not kept).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from dataclasses import asdict
from typing import Any, Callable, Sequence

import numpy as np

from echodfkd.io.video import resize_frames
from echodfkd.stream.precision import AUTO_FRAMES, DICE_BAR, PrecisionCheck, check_precisions, choose_precision

#: Issue 17's goals: one stream at 112 px on 2 cores, against the fp32 teacher measured in the same run.
GOAL_FPS = 400.0
GOAL_RATIO = 25.0
TEACHER = "deeplabv3_resnet50"


def _clip(frames: int, size: int = 112) -> tuple[np.ndarray, str]:
    """A phantom clip (random frames if the phantom generator is unavailable)."""
    try:
        from echodfkd.data.phantom import make_clip

        return make_clip(seed=0, index=0, size=size, frames=frames).frames, "phantom"
    except Exception:  # the benchmark must not depend on the phantom's internals
        return np.random.default_rng(0).integers(0, 256, (frames, size, size), dtype=np.uint8), "random"


def _load_avg() -> float | None:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _input_fn(model_size: int, dtype: Any = None) -> Callable[[np.ndarray], Any]:
    """uint8 frame (H, W) -> the engine's input (1, 1, S, S) float tensor, resized as `Predictor.admit` does."""
    import torch

    def prep(frame: np.ndarray) -> Any:
        x = torch.from_numpy(resize_frames(frame[None], model_size)[0].astype(np.float32))[None, None]
        return x if dtype is None else x.to(dtype).contiguous(memory_format=torch.channels_last)
    return prep


def _stream_fn(step: Callable, frames: np.ndarray, prep: Callable[[np.ndarray], Any]) -> Callable[[], int]:
    """A callable streaming all uint8 `frames` through `step(prep(frame), state)` from a zero state (the input
    conversion and the resize to the model size are timed: a stream delivers uint8 frames of its own size)."""
    def run() -> int:
        state = None
        for f in frames:
            _, state = step(prep(f), state)
        return len(frames)
    return run


def _suffix(precision: str) -> str:
    return "" if precision == "fp32" else f"_{precision}"


def _eager_variants(student: Any, clip: np.ndarray, precisions: tuple[str, ...],
                    model_size: int) -> dict[str, Callable[[], int]]:
    """The reference `Student.step` and the fast engine at each precision."""
    from echodfkd.models.fast import for_precision

    out = {"student_step_reference": _stream_fn(student.step, clip, _input_fn(model_size))}
    for p in precisions:
        eng = for_precision(student, p)
        out["student_step_fast" + _suffix(p)] = _stream_fn(eng.step, clip, _input_fn(model_size, eng.dtype))
    return out


def _compiled_variants(student: Any, clip: np.ndarray, size: int, precisions: tuple[str, ...],
                       notes: list[str]) -> dict[str, Callable[[], int]]:
    """The ahead-of-time compiled engine at each precision and model `size` (built once and cached), if a
    compiler exists."""
    from echodfkd.models.compiled import find_compiler, load_or_compile

    if find_compiler() is None:
        notes.append("no C++ compiler on PATH: the compiled engine was not measured")
        return {}
    out = {}
    for p in precisions:
        t0 = time.perf_counter()
        built: list[str] = []
        eng = load_or_compile(student, (size, size), p, log=built.append)
        how = "built" if any("compiled in" in b for b in built) else "loaded from the cache"
        notes.append(f"compiled {p} engine {how} in {time.perf_counter() - t0:.1f} s (paid once per model, size "
                     "and precision)")
        out["student_step_compiled" + _suffix(p)] = _stream_fn(
            lambda f, st, e=eng: e.step(f, e.init_state() if st is None else st), clip, _input_fn(size))
    return out


def _onnx_variant(student: Any, clip: np.ndarray, size: int, folder: Path) -> dict[str, Callable[[], int]]:
    """ONNX Runtime streaming the exported step graph."""
    import torch

    from echodfkd.models.export import export_onnx
    from echodfkd.stream.engines import OnnxEngine

    path = folder / "student.onnx"
    export_onnx(student, path, size=size)
    eng = OnnxEngine(path, threads=torch.get_num_threads())

    def run() -> int:
        eng.reset()
        for f in clip:
            eng.step(resize_frames(f[None], size)[0].astype(np.float32))
        return len(clip)
    return {"student_step_onnxruntime": run}


def _predictor_variants(student: Any, clip: np.ndarray, size: int, compiled: str | None) -> dict[str, Callable[[], int]]:
    """`Predictor.push` end to end (resize, engine, soft mask, alert statistics): eager fp32, and compiled."""
    from echodfkd.stream.predictor import Predictor

    def stream(pred: Predictor) -> Callable[[], int]:
        def run() -> int:
            pred.reset()
            for f in clip:
                pred.push(f)
            return len(clip)
        return run
    out = {"predictor_push_end_to_end": stream(Predictor(student, size=size))}
    if compiled:
        out[f"predictor_push_end_to_end_compiled_{compiled}"] = stream(
            Predictor(student, size=size, compile=True, precision=compiled))
    return out


def _teacher_variants(clip: np.ndarray, frames: int) -> dict[str, Callable[[], int]]:
    """The fp32 DeepLabv3-ResNet50 teacher: batched (its fastest) and one frame at a time (real-time setting)."""
    from echodfkd.teacher.model import Teacher, build_segmenter

    net = Teacher(build_segmenter(TEACHER)).eval()
    tclip = clip[:frames]
    return {f"teacher_{TEACHER}_batch": lambda: (net(tclip), len(tclip))[1],
            f"teacher_{TEACHER}_single": lambda: sum(1 for f in tclip[:4] if net(f) is not None)}


def _time_rounds(variants: dict[str, Callable[[], int]], rounds: int) -> dict[str, list[float]]:
    """fps of every variant in each of `rounds` interleaved rounds, after one warm-up call each."""
    import torch

    fps: dict[str, list[float]] = {k: [] for k in variants}
    with torch.inference_mode():
        for fn in variants.values():  # warm-up (oneDNN primitive creation, allocator)
            fn()
        for _ in range(rounds):
            for name, fn in variants.items():
                t0 = time.perf_counter()
                n = fn()
                fps[name].append(n / (time.perf_counter() - t0))
    return fps


def _ratios(fps: dict[str, list[float]], teacher: str) -> dict[str, float]:
    """Median over rounds of each student streaming variant's fps over the teacher's in the same round."""
    t = fps[teacher]
    return {k: round(statistics.median([a / b for a, b in zip(v, t)]), 1)
            for k, v in fps.items() if k.startswith("student_step")}


def run_benchmark(model: str | None = None, frames: int = 48, rounds: int = 5, teacher_frames: int = 8,
                  threads: int | None = None, onnx: bool = True, compile: bool = False, bf16: bool = False,
                  memory: bool = True, teacher: bool = True, size: int = 112,
                  check_clips: Sequence[str] = (), model_size: int | None = None) -> dict[str, Any]:
    """Measure every variant in interleaved rounds; returns a JSON-ready dict of figures and notes.

    The clip has `size` px frames (the teacher's input); the student runs at `model_size` (default: the
    run's `infer_size`, as `predict` runs it, else `size`), each frame resized to it inside the timed step.

    `bf16` adds the reduced precisions (mixed and bf16); their masks are checked against fp32 on
    `check_clips` (videos or folders; a dataset folder gives its TEST split), else on the benchmark clip.
    """
    import torch

    from echodfkd.models import Student
    from echodfkd.stream.predictor import load_run

    if threads:
        torch.set_num_threads(int(threads))
    torch.manual_seed(0)
    student, record, _ = load_run(model) if model else (Student(4, 1).eval(), None, None)
    msize = int(model_size or (record.model_size(size) if record is not None else size))
    clip, kind = _clip(max(frames, 32), size)
    clip = clip[:frames]
    precisions = ("fp32", *(REDUCED if bf16 else ()))
    notes: list[str] = []
    if msize != size:
        notes.append(f"the student runs at {msize}x{msize} (the run's infer_size, as predict runs it) on the "
                     f"{size}x{size} clip; each frame's resize is timed (--model-size {size} for full size)")
    variants = _eager_variants(student, clip, precisions, msize)
    compiled = _compiled_variants(student, clip, msize, precisions, notes) if compile else {}
    variants.update(compiled)
    batch = torch.from_numpy(resize_frames(clip, msize).astype(np.float32))[None, :, None]
    variants["student_batch_forward"] = lambda: (student(batch), len(clip))[1]
    with tempfile.TemporaryDirectory() as tmp:
        if onnx:
            variants.update(_onnx_variant(student, clip, msize, Path(tmp)))
        check = _precision_check(student, msize, bool(compiled), precisions, clip, check_clips) if bf16 else None
        best = choose_precision(check)[0] if check else "fp32"
        variants.update(_predictor_variants(student, clip, msize, best if compiled else None))
        if teacher:
            variants.update(_teacher_variants(clip, teacher_frames))
        load_before = _load_avg()
        fps = _time_rounds(variants, rounds)
    result: dict[str, Any] = {
        "clip": f"{kind} {len(clip)} frames {size}x{size}", "model": model or "random-init Student(4,1)",
        "model_size": msize,
        "params": student.num_parameters(), "threads": torch.get_num_threads(), "rounds": rounds,
        "load_average_before": load_before, "load_average_after": _load_avg(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "fps_median": {k: round(statistics.median(v), 1) for k, v in fps.items()},
        "fps_best": {k: round(max(v), 1) for k, v in fps.items()},
    }
    if teacher:
        result["ratio_vs_teacher_median"] = _ratios(fps, f"teacher_{TEACHER}_batch")
        result["ratio_vs_teacher_single_frame_median"] = _ratios(fps, f"teacher_{TEACHER}_single")
    if check:
        result["precision_check"] = _check_record(check, check_clips)
    result["goals"] = _goals(result)
    if memory:
        result["memory"] = _memory(model)
    notes.append("absolute fps depend on the machine's load (see the load average); ratios are measured round "
                 "by round on the same clip")
    busy = max(load_before or 0.0, result["load_average_after"] or 0.0)
    if busy > (os.cpu_count() or 1) and result["threads"] > 1 and not os.environ.get("OMP_WAIT_POLICY"):
        notes.append(f"the machine was busy (load average {busy:.1f} on {os.cpu_count()} CPUs): OpenMP threads "
                     "spin-waiting for a preempted partner can slow multi-thread figures several-fold; "
                     "OMP_WAIT_POLICY=PASSIVE or --threads 1 measure more steadily")
    result["notes"] = notes
    return result


#: The reduced precisions timed with --bf16 and checked against fp32.
REDUCED = ("mixed", "bf16")
#: Clips checked per --check-clips path.
CHECK_CLIPS_PER_PATH = 3


def _check_sources(paths: Sequence[str]) -> list[tuple[str, np.ndarray]]:
    """(name, frames) of the first clips of each path: a dataset folder's TEST split, a folder, or a video."""
    from echodfkd.errors import EchoDFKDError
    from echodfkd.stream.batch import _load, find_clips

    out = []
    for path in paths:
        has_test = (Path(path) / "FileList.csv").is_file()
        try:
            sources = find_clips(path, "TEST" if has_test else None)
        except EchoDFKDError:  # a dataset without a TEST split: take its first clips
            sources = find_clips(path)
        out += [(src.name, _load(src).frames[:AUTO_FRAMES]) for src in sources[:CHECK_CLIPS_PER_PATH]]
    return out


def _precision_check(student: Any, size: int, compiled: bool, precisions: tuple[str, ...], clip: np.ndarray,
                     paths: Sequence[str]) -> dict[str, PrecisionCheck]:
    """Each precision's masks vs fp32's through the predictor (compiled engines when measured)."""
    from echodfkd.stream.predictor import Predictor

    clips = _check_sources(paths) if paths else [("benchmark clip", clip)]
    return check_precisions(lambda p: Predictor(student, size=size, compile=compiled, precision=p), clips,
                            candidates=precisions)


def _check_record(check: dict[str, PrecisionCheck], paths: Sequence[str]) -> dict[str, Any]:
    choice, reason = choose_precision(check)
    return {"clips": list(next(iter(check.values())).dice_per_clip), "paths": list(paths) or ["benchmark clip"],
            "bar": DICE_BAR, "choice": choice, "reason": reason, "checks": {k: asdict(v) for k, v in check.items()}}


def _precision_of(variant: str) -> str:
    for p in REDUCED:
        if variant.endswith("_" + p):
            return p
    return "fp32"


def _goals(result: dict[str, Any]) -> dict[str, Any]:
    """The fastest streaming variant whose precision's masks stay within Dice 0.995 of fp32, vs the goals."""
    med, best = result["fps_median"], result["fps_best"]
    checks = result.get("precision_check", {}).get("checks", {})

    def accurate(name: str) -> bool:
        p = _precision_of(name)
        return p == "fp32" or (p in checks and checks[p]["dice_min"] >= DICE_BAR)

    qualifying = [k for k in med if k.startswith("student_step") and k != "student_step_reference" and accurate(k)]
    pick = max(qualifying, key=lambda k: med[k]) if qualifying else "student_step_fast"
    out = {"student_fps_goal": GOAL_FPS, "variant": pick, "student_fps_median": med.get(pick, 0.0),
           "student_fps_best": best.get(pick, 0.0), "fps_goal_met_median": med.get(pick, 0.0) >= GOAL_FPS,
           "min_dice": DICE_BAR, "ratio_goal": GOAL_RATIO}
    for key, which in (("ratio_vs_teacher_median", "batch"), ("ratio_vs_teacher_single_frame_median", "single")):
        if key in result:
            r = result[key].get(pick, 0.0)
            out[f"ratio_{which}"] = r
            out[f"ratio_{which}_goal_met"] = r >= GOAL_RATIO
    return out


def _memory(model: str | None) -> dict[Any, Any]:
    """Peak-memory growth streaming 100 and 1,000 frames, in fresh one-thread children (memory does not
    depend on threads, and an oversubscribed 2-thread child can crawl)."""
    mem: dict[Any, Any] = {n: _memory_child(n, model, 1) for n in (100, 1000)}
    grow = [mem[n].get("growth_kb") for n in (100, 1000)]
    if None not in grow:
        mem["growth_difference_kb"] = grow[1] - grow[0]
    return mem


def _memory_child(n: int, model: str | None, threads: int | None) -> dict[str, Any]:
    """Peak-RSS growth of a fresh process streaming `n` frames through Predictor.push (results dropped)."""
    code = (f"from echodfkd.stream.bench import memory_child; memory_child({n}, {model!r}, {threads!r})")
    env = dict(os.environ, ECHODFKD_QUIET="1")
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=900)
    except subprocess.TimeoutExpired:
        return {"error": f"streaming {n} frames took over 900 s (machine too busy)"}
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1][:200]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _vm(key: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def memory_child(n: int, model: str | None = None, threads: int | None = None) -> None:
    """(child process) Stream n generated frames; print peak-RSS figures as one JSON line."""
    import torch

    from echodfkd.models import Student
    from echodfkd.stream.predictor import Predictor

    if threads:
        torch.set_num_threads(int(threads))
    pred = Predictor(model if model else Student(4, 1).eval())
    clip, _ = _clip(32)
    for f in clip[:8]:  # warm-up: allocator and oneDNN caches settle before the baseline
        pred.push(f)
    pred.reset()
    base = _vm("VmHWM")
    for i in range(n):
        pred.push(clip[i % len(clip)])
    peak = _vm("VmHWM")
    print(json.dumps({"frames": n, "peak_rss_kb_before": base, "peak_rss_kb_after": peak,
                      "growth_kb": None if base is None or peak is None else peak - base}))
