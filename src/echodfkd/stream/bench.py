"""Inference benchmark: student streaming/batch fps vs the DeepLabv3 teacher, and streaming memory.

Everything runs in one process on the same phantom clip, in interleaved rounds (every variant once per
round), so a busy machine slows all variants alike: ratios are taken within a round, and the median and
best round are both reported. Streaming memory is measured in fresh child processes (peak RSS, VmHWM,
growth while streaming 100 vs 1,000 frames from a frame generator, results not kept).
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
from typing import Any, Callable

import numpy as np

GOAL_FPS = 200.0
GOAL_RATIO = 20.0


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


def _stream_fn(step: Callable, frames: list) -> Callable[[], int]:
    """A callable streaming all `frames` through `step(frame, state)` from a zero state."""
    def run() -> int:
        state = None
        for f in frames:
            _, state = step(f, state)
        return len(frames)
    return run


def run_benchmark(model: str | None = None, frames: int = 48, rounds: int = 5, teacher_frames: int = 8,
                  threads: int | None = None, onnx: bool = True, compile: bool = False, bf16: bool = False,
                  memory: bool = True, teacher: bool = True, size: int = 112) -> dict[str, Any]:
    """Measure every variant in interleaved rounds; returns a JSON-ready dict of figures and notes."""
    import torch

    from echodfkd.models import Student
    from echodfkd.models.fast import StreamingStudent
    from echodfkd.stream.predictor import Predictor, load_run

    if threads:
        torch.set_num_threads(int(threads))
    torch.manual_seed(0)
    student = load_run(model)[0] if model else Student(4, 1).eval()
    clip, kind = _clip(max(frames, 32), size)
    clip = clip[:frames]
    x = [torch.from_numpy(f.astype(np.float32))[None, None] for f in clip]
    xcl = [f.contiguous(memory_format=torch.channels_last) for f in x]
    fast = StreamingStudent(student)
    variants: dict[str, Callable[[], int]] = {
        "student_step_reference": _stream_fn(student.step, x),
        "student_step_fast": _stream_fn(fast.step, xcl),
    }
    notes: list[str] = []
    if bf16:
        fast_bf = StreamingStudent(student, dtype=torch.bfloat16)
        variants["student_step_fast_bf16"] = _stream_fn(fast_bf.step, [f.to(torch.bfloat16) for f in xcl])
    compiled_engines: dict[str, Any] = {}
    if compile:
        from echodfkd.models.compiled import find_compiler, load_or_compile

        if find_compiler() is None:
            notes.append("no C++ compiler on PATH: the compiled engine was not measured")
        else:
            for precision in ("fp32", "bf16") if bf16 else ("fp32",):
                t0 = time.perf_counter()
                built: list[str] = []
                eng = load_or_compile(student, (size, size), precision, log=built.append)
                how = "built" if any("compiled in" in b for b in built) else "loaded from the cache"
                notes.append(f"compiled {precision} engine {how} in {time.perf_counter() - t0:.1f} s "
                             f"(paid once per model, size and precision)")
                compiled_engines[precision] = eng
                name = "student_step_compiled" + ("_bf16" if precision == "bf16" else "")
                variants[name] = _stream_fn(lambda f, st, e=eng: e.step(f, e.init_state() if st is None else st), x)
    batch = torch.from_numpy(clip.astype(np.float32))[None, :, None]
    variants["student_batch_forward"] = lambda: (student(batch), len(clip))[1]
    tmp = tempfile.TemporaryDirectory()
    if onnx:
        from echodfkd.models.export import export_onnx
        from echodfkd.stream.engines import OnnxEngine

        path = Path(tmp.name) / "student.onnx"
        export_onnx(student, path, size=size)
        eng = OnnxEngine(path, threads=torch.get_num_threads())
        cf = [f.astype(np.float32) for f in clip]

        def onnx_stream() -> int:
            eng.reset()
            for f in cf:
                eng.step(f)
            return len(cf)
        variants["student_step_onnxruntime"] = onnx_stream
    def predictor_stream(pred: Predictor) -> Callable[[], int]:
        def run() -> int:
            pred.reset()
            for f in clip:
                pred.push(f)
            return len(clip)
        return run
    variants["predictor_push_end_to_end"] = predictor_stream(Predictor(student, size=size))
    if compiled_engines:
        best = "bf16" if "bf16" in compiled_engines else "fp32"
        variants[f"predictor_push_end_to_end_compiled_{best}"] = predictor_stream(
            Predictor(student, size=size, compile=True, precision=best))
    if teacher:
        from echodfkd.teacher.model import Teacher, build_segmenter

        net = Teacher(build_segmenter("deeplabv3_resnet50")).eval()
        tclip = clip[:teacher_frames]
        variants["teacher_deeplabv3_resnet50_batch"] = lambda: (net(tclip), len(tclip))[1]
        # One frame at a time: the teacher in the student's real-time setting.
        variants["teacher_deeplabv3_resnet50_single"] = lambda: sum(1 for f in tclip[:4] if net(f) is not None)

    load_before = _load_avg()
    fps: dict[str, list[float]] = {k: [] for k in variants}
    with torch.inference_mode():
        for fn in variants.values():  # warm-up (oneDNN primitive creation, allocator)
            fn()
        for _ in range(rounds):
            for name, fn in variants.items():
                t0 = time.perf_counter()
                n = fn()
                fps[name].append(n / (time.perf_counter() - t0))
    result: dict[str, Any] = {
        "clip": f"{kind} {len(clip)} frames {size}x{size}", "model": model or "random-init Student(4,1)",
        "params": student.num_parameters(), "threads": torch.get_num_threads(), "rounds": rounds,
        "load_average_before": load_before, "load_average_after": _load_avg(),
        "fps_median": {k: round(statistics.median(v), 1) for k, v in fps.items()},
        "fps_best": {k: round(max(v), 1) for k, v in fps.items()},
    }
    if teacher:
        t = fps["teacher_deeplabv3_resnet50_batch"]
        ratio = {k: [a / b for a, b in zip(v, t)] for k, v in fps.items() if k.startswith("student_step")}
        result["ratio_vs_teacher_median"] = {k: round(statistics.median(v), 1) for k, v in ratio.items()}
        single = fps["teacher_deeplabv3_resnet50_single"]
        result["ratio_vs_teacher_single_frame_median"] = {
            k: round(statistics.median([a / b for a, b in zip(v, single)]), 1)
            for k, v in fps.items() if k.startswith("student_step")}
    if bf16:
        result["bf16_dice_vs_fp32"] = _bf16_agreement(student, clip, compiled_engines.get("bf16"))
    result["goals"] = _goals(result)
    if memory:
        # One thread: memory does not depend on it, and an oversubscribed 2-thread child can crawl.
        result["memory"] = {n: _memory_child(n, model, 1) for n in (100, 1000)}
        grow = [result["memory"][n].get("growth_kb") for n in (100, 1000)]
        if None not in grow:
            result["memory"]["growth_difference_kb"] = grow[1] - grow[0]
    notes.append("the machine's 2 cores are shared with other jobs: absolute fps are noisy (compare the "
                 "median and best rounds); ratios are measured round by round on the same clip")
    result["notes"] = notes
    tmp.cleanup()
    return result


#: A bf16 variant counts towards the goals only if its masks stay this close to fp32's (issue: Dice 0.99).
BF16_MIN_DICE = 0.99


def _goals(result: dict[str, Any]) -> dict[str, Any]:
    """The fastest streaming variant whose output qualifies (fp32, or bf16 within Dice 0.99) vs the goals."""
    med, best = result["fps_median"], result["fps_best"]
    dice = result.get("bf16_dice_vs_fp32", {})
    qualifying = []
    for name in med:
        if not name.startswith("student_step") or name == "student_step_reference":
            continue
        if name.endswith("_bf16"):
            d = dice.get("compiled" if "compiled" in name else "eager")
            if d is None or d < BF16_MIN_DICE:
                continue
        qualifying.append(name)
    pick = max(qualifying, key=lambda k: med[k]) if qualifying else "student_step_fast"
    out = {"student_fps_goal": GOAL_FPS, "variant": pick, "student_fps_median": med.get(pick, 0.0),
           "student_fps_best": best.get(pick, 0.0), "fps_goal_met_median": med.get(pick, 0.0) >= GOAL_FPS,
           "bf16_min_dice": BF16_MIN_DICE}
    if "ratio_vs_teacher_median" in result:
        r = result["ratio_vs_teacher_median"].get(pick, 0.0)
        out.update(ratio_goal=GOAL_RATIO, ratio_median=r, ratio_goal_met=r >= GOAL_RATIO)
    return out


def _bf16_agreement(student: Any, clip: np.ndarray, compiled_bf16: Any = None) -> dict[str, float]:
    """Mean per-frame Dice of bf16 vs fp32 masks (logit > 0) on the clip: eager engine, and compiled if given."""
    import torch

    from echodfkd.measures.masks import dice
    from echodfkd.models.fast import StreamingStudent

    def masks(step: Callable, state: Any) -> np.ndarray:
        out = []
        with torch.inference_mode():
            for f in clip:
                logits, state = step(torch.from_numpy(f.astype(np.float32))[None, None], state)
                out.append((logits[0, 0].float() > 0).numpy())
        return np.stack(out)

    ref = masks(StreamingStudent(student).step, None)
    result = {"eager": masks(StreamingStudent(student, dtype=torch.bfloat16).step, None)}
    if compiled_bf16 is not None:
        result["compiled"] = masks(compiled_bf16.step, compiled_bf16.init_state())
    return {k: round(float(dice(v, ref, reduction="mean")), 4) for k, v in result.items()}


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
