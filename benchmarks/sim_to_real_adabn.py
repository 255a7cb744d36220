"""Test-time BatchNorm re-estimation (AdaBN) on real clips, leave-one-out, for demo students and the teacher.

`python benchmarks/sim_to_real_adabn.py DEMO/student [OTHER_RUN ...] [--teacher DEMO/teacher/teacher.pt]`

For each echonet_dev clip (DeepLabv3's masks, a development set), the model's BatchNorm statistics are
re-estimated, without labels, on the other 4 real fixture clips (cumulative averages, BN in training mode for
one pass), then its masks on the held-out clip are compared with DeepLabv3's (mean per-frame Dice), beside
the unadapted model's. It asks whether the sim-to-real gap is a shift of feature statistics.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sim_to_real import FIXTURES, per_clip, real_clips  # noqa: E402


def _adapt(model: torch.nn.Module, feed, frames_list: list[np.ndarray]) -> torch.nn.Module:
    """A copy of `model` whose BatchNorm statistics are the cumulative averages over `frames_list`."""
    m = copy.deepcopy(model).eval()
    for bn in (x for x in m.modules() if isinstance(x, torch.nn.modules.batchnorm._BatchNorm)):
        bn.reset_running_stats()
        bn.momentum = None
        bn.train()
    with torch.no_grad():
        for frames in frames_list:
            feed(m, frames)
    return m.eval()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="student runs (e.g. DEMO/student)")
    ap.add_argument("--teacher", default=None, help="teacher checkpoint (default: RUNS[0]/../teacher/teacher.pt)")
    args = ap.parse_args()
    from echodfkd.data.convert import prepare_clip
    from echodfkd.io.video import resize_frames
    from echodfkd.models import Student
    from echodfkd.stream import Predictor
    from echodfkd.stream.engines import TorchEngine
    from echodfkd.teacher.model import load_teacher

    torch.set_num_threads(2)
    torch.set_flush_denormal(True)
    if not (FIXTURES / "echonet_dev").is_dir():
        print(f"{FIXTURES}: no echonet_dev fixtures", file=sys.stderr)
        return 2
    clips = []
    for c in real_clips(FIXTURES):
        prepared = prepare_clip(c["path"], mode="auto")
        clips.append((c["name"], prepared.frames, prepared.fps, c["reference"]))
    dev = [i for i, c in enumerate(clips) if c[3] is not None]
    others = {k: [c[1] for i, c in enumerate(clips) if i != k] for k in dev}

    for run in args.runs:
        student = Student.from_pretrained(run).eval()
        predictor = Predictor(run)
        size, cut = predictor.size, round(255 * predictor.thresholds["dice"])

        def feed(m, frames, size=size):
            m(torch.from_numpy(resize_frames(frames, size).astype(np.float32))[None, :, None])

        def dice_on(model, k, predictor=predictor, cut=cut):
            predictor.engine = TorchEngine(model)
            masks = predictor.predict_clip(clips[k][1], clips[k][2]).masks >= cut
            return per_clip(masks, clips[k][3])["dice_mean_frames"]

        base = [dice_on(student, k) for k in dev]
        adapted = [dice_on(_adapt(student, feed, others[k]), k) for k in dev]
        print(f"{run}: student {np.mean(base):.3f} {np.round(base, 3).tolist()} | AdaBN leave-one-out "
              f"{np.mean(adapted):.3f} {np.round(adapted, 3).tolist()}", flush=True)

    teacher = load_teacher(args.teacher or Path(args.runs[0]).parent / "teacher" / "teacher.pt").eval()

    def feed_teacher(m, frames):
        for i in range(0, len(frames), 16):
            m(frames[i:i + 16])

    def teacher_dice(m, k):
        with torch.inference_mode():
            return per_clip((m(clips[k][1]) > 0).cpu().numpy(), clips[k][3])["dice_mean_frames"]

    base = [teacher_dice(teacher, k) for k in dev]
    adapted = [teacher_dice(_adapt(teacher, feed_teacher, others[k]), k) for k in dev]
    print(f"teacher: {np.mean(base):.3f} {np.round(base, 3).tolist()} | AdaBN leave-one-out "
          f"{np.mean(adapted):.3f} {np.round(adapted, 3).tolist()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
