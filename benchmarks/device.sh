#!/usr/bin/env bash
# Prepared GPU benchmark (issue 17): student stream and batch fps, the teacher's fps, and distillation
# frames/s in fp32 and bf16-mixed, on a lent CUDA device, in <= 5 minutes (each part has a time limit).
# Prints each figure as it is measured, ratios side by side in one run, and writes OUT/inference.json
# and OUT/train/ (OUT defaults to a temp folder).
#
#   bash benchmarks/device.sh            # from anywhere; uses the repository's .venv/bin/python when present
#   DEVICE=cuda:1 OUT=/tmp/dev bash benchmarks/device.sh
#
# Needs no data: it makes its own phantom clips and a random-init student (4,1) at 112 px (speed does not
# depend on the weights). Without a CUDA device it prints "no CUDA device, skipped" and exits 0.
# SELFTEST=1 runs the inference part on the CPU at 32 px (checks the script's code path, not a benchmark).
# Status: written and run on a CPU-only machine (skip path and SELFTEST); it has NOT been run on a GPU yet
# (no device was lent in the session that wrote it), so its first GPU run is also its first real test.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
DEVICE=${DEVICE:-cuda}
OUT=${OUT:-$(mktemp -d)}
SELFTEST=${SELFTEST:-0}
mkdir -p "$OUT"

if [ "$SELFTEST" = 1 ]; then
    DEVICE=cpu
elif ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "benchmarks/device.sh: no CUDA device, skipped"
    exit 0
fi

echo "== student and teacher inference on $DEVICE (out: $OUT)"
timeout 170 "$PY" - "$DEVICE" "$OUT" "$SELFTEST" <<'PYEOF' || echo "inference part failed or ran out of time (exit $?)"
import json, statistics, sys, time
import numpy as np, torch
from echodfkd.data.phantom import make_clip
from echodfkd.models import Student
from echodfkd.models.fast import PRECISIONS, for_precision
from echodfkd.teacher.model import Teacher, build_segmenter

dev, out, selftest = torch.device(sys.argv[1]), sys.argv[2], sys.argv[3] == "1"
size, frames, batches = (32, 16, (2,)) if selftest else (112, 64, (16, 64))
torch.manual_seed(0)
torch.backends.cudnn.benchmark = True
sync = (lambda: torch.cuda.synchronize(dev)) if dev.type == "cuda" else (lambda: None)
clip = make_clip(seed=0, index=0, size=size, frames=frames).frames
student = Student(4, 1).eval()
res = {"device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else str(dev), "torch": torch.__version__,
       "size": size, "fps": {}}


def timed(name, fn, n_frames, rounds=5):
    """Median fps over `rounds` calls after one warm-up call, synchronising around each; printed at once."""
    fn()
    sync()
    fps = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        sync()
        fps.append(n_frames / (time.perf_counter() - t0))
    res["fps"][name] = round(statistics.median(fps), 1)
    print(f"{name:44s} {res['fps'][name]:10.1f} fps", flush=True)


print(f"device: {res['device']}, torch {res['torch']}, {size}x{size} frames", flush=True)
x = torch.from_numpy(clip.astype(np.float32))[:, None].to(dev)  # (T, 1, H, W)
with torch.inference_mode():
    for p in PRECISIONS:
        eng = for_precision(student, p).to(dev)
        for compiled in (False, True):
            step = torch.compile(eng, dynamic=False) if compiled else eng

            def stream():
                state = eng.init_state(1, size, size, dev).flat()
                for f in x:  # each frame's logits are read back, as a real-time stream needs
                    o = step(f[None], *state)
                    state = list(o[1:])
                    o[0].float().cpu()
            timed(f"student_stream_{p}{'_compiled' if compiled else ''}", stream, len(x))
    s = student.to(dev)
    for n in batches:  # whole clips at once: n clips of `frames` frames in one forward
        batch = x[None].expand(n, -1, -1, -1, -1).contiguous()
        timed(f"student_batch_fp32_n{n}", lambda: s(batch), n * len(x), 3)
        with torch.autocast(dev.type, dtype=torch.bfloat16):
            timed(f"student_batch_bf16_n{n}", lambda: s(batch), n * len(x), 3)
    net = Teacher(build_segmenter("deeplabv3_resnet50")).eval().to(dev)
    g = x[:, 0]
    timed("teacher_deeplabv3_resnet50_fp32_batch", lambda: net(g, chunk=64), len(g), 3)
    timed("teacher_deeplabv3_resnet50_fp32_single", lambda: [net(f).cpu() for f in g[:16]], len(g[:16]), 3)
    with torch.autocast(dev.type, dtype=torch.bfloat16):
        timed("teacher_deeplabv3_resnet50_bf16_batch", lambda: net(g, chunk=64), len(g), 3)
t = res["fps"]["teacher_deeplabv3_resnet50_fp32_batch"]
res["ratio_vs_teacher_fp32_batch"] = {k: round(v / t, 1) for k, v in res["fps"].items() if k.startswith("student")}
print("x the fp32 teacher (batched, same run): "
      + ", ".join(f"{k} {v}" for k, v in res["ratio_vs_teacher_fp32_batch"].items()))
with open(f"{out}/inference.json", "w") as fh:
    json.dump(res, fh, indent=2)
PYEOF

if [ "$SELFTEST" = 1 ]; then
    echo "SELFTEST: distillation part skipped"
    exit 0
fi
echo "== distillation training frames/s on $DEVICE, fp32 vs bf16-mixed (benchmarks/bench_train.py)"
timeout 120 "$PY" benchmarks/bench_train.py --accelerator gpu --variants fp32,bf16 --sizes 56,112 --steps 5 \
    --rounds 2 --batch-size 16 --out "$OUT/train" || echo "bench_train.py failed or ran out of time (exit $?)"
echo "figures: $OUT/inference.json, $OUT/train/"
