"""The dry-run plan: clips, frames, compute, estimated time and disk for every step of a reproduce run.

Time = work (frames) / measured throughput (frames/s) of that kind of work on one machine: the reference
constants (`throughput.REFERENCE`, our build machine, one CPU core) or figures measured just now with
`--measure` on the machine that will run the chain. Compute (TMAC) is counted with FlopCounterMode and
does not depend on the machine. Training epochs are the maximum: early stopping usually ends sooner.
Several devices divide the distillation time as if data-parallel scaling were perfect (stated).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from echodfkd.reproduce.inputs import Inputs, Settings
from echodfkd.pipeline import read_journal
from echodfkd.reproduce.layout import declare_steps
from echodfkd.reproduce.throughput import REFERENCE, Throughput, lookup

#: Bytes a finished run's logs take per epoch (CSV + TensorBoard scalars), measured on phantom runs.
LOG_BYTES_PER_EPOCH = 2_000
#: Bytes of one evaluation report (tables, figures, 3 overlay GIFs), measured on phantom runs.
EVAL_REPORT_BYTES = 1_500_000
#: Training MACs per frame relative to a forward pass (backward ≈ 2 forwards, the usual convention).
TRAIN_MAC_FACTOR = 3


@dataclass
class PlanStep:
    """One step of the plan."""

    name: str
    title: str
    resource: str
    clips: int
    frames: int
    work: str
    seconds: float | None
    tmac: float | None
    disk_bytes: float
    basis: str
    done: bool = False


@dataclass
class Plan:
    """Every step, the throughput it was estimated with, and notes."""

    steps: list[PlanStep]
    throughput: Throughput
    frames_source: str
    notes: list[str] = field(default_factory=list)

    def totals(self) -> dict[str, float]:
        """Seconds (steps still to run) and disk bytes over all steps."""
        todo = [s for s in self.steps if not s.done]
        return {"seconds": sum(s.seconds or 0.0 for s in todo), "disk_bytes": sum(s.disk_bytes for s in self.steps),
                "tmac": sum(s.tmac or 0.0 for s in todo), "unknown": sum(s.seconds is None for s in todo)}

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready plan."""
        return {"steps": [asdict(s) for s in self.steps], "totals": self.totals(),
                "throughput": self.throughput.as_dict(), "frames_source": self.frames_source, "notes": self.notes}

    def format(self) -> str:
        """The plan as a fixed-width table plus its basis and notes."""
        head = f"{'step':<22} {'res':<4} {'clips':>7} {'frames':>12} {'TMAC':>9} {'time':>9} {'disk':>9}  status"
        lines = [head, "-" * len(head)]
        for s in self.steps:
            lines.append(f"{s.name:<22} {s.resource:<4} {s.clips:>7,} {s.frames:>12,} {_tmac(s.tmac):>9} "
                         f"{_duration(s.seconds):>9} {_bytes(s.disk_bytes):>9}  {'done' if s.done else 'to run'}")
        t = self.totals()
        lines.append("-" * len(head))
        unknown = f" (+{t['unknown']} step(s) not estimable)" if t["unknown"] else ""
        lines.append(f"{'total still to run':<49} {_tmac(t['tmac']):>9} {_duration(t['seconds']):>9} "
                     f"{_bytes(t['disk_bytes']):>9}{unknown}")
        tp = self.throughput
        lines += ["", f"Times are work / throughput measured on: {tp.machine} [{tp.source}].",
                  "  On a GPU machine run `--dry-run --measure` there to time its own device (a minute or two).",
                  "  Compute (TMAC) is counted with FlopCounterMode and holds on any machine.",
                  "  res: CPU = always on the CPU; dev = on --device (the GPU when there is one).",
                  f"Frames: {self.frames_source}."]
        groups: dict[tuple[str, str], list[str]] = {}
        for s in self.steps:  # one line per kind of step when they share work and basis
            groups.setdefault((s.name.split("-")[0], f"{s.work}; {s.basis}"), []).append(s.name)
        lines += [f"  {names[0] if len(names) == 1 else f'{kind}-* ({len(names)} steps)'}: {text}"
                  for (kind, text), names in groups.items()]
        lines += [f"Note: {n}" for n in self.notes]
        return "\n".join(lines)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:,.1f} h"


def _bytes(n: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n:.0f} B"


def _tmac(tmac: float | None) -> str:
    return "-" if not tmac else (f"{tmac:,.0f}" if tmac >= 10 else f"{tmac:.2g}")


def _per_s(frames: float, fps: float | None) -> float | None:
    return None if not fps else frames / fps


def done_steps(out: Path) -> set[str]:
    """Names of the steps OUT/steps.json records as finished (read only; nothing is created)."""
    journal = read_journal(out)
    return set() if journal is None else {n for n in journal.steps if n not in journal.stale}


def _devices(st: Settings) -> int:
    return (st.devices if isinstance(st.devices, int) else 1) * max(1, st.num_nodes)


def plan(st: Settings, inputs: Inputs, throughput: Throughput | None = None) -> Plan:
    """Estimate every step of `reproduce(st)` from the inputs' clip/frame counts and a throughput table."""
    from echodfkd.data.check import default_workers
    from echodfkd.reproduce.throughput import count_gmac, student_gmac

    tp = throughput or REFERENCE
    done = done_steps(st.out)
    dyn_all = len(inputs.dynamic)
    dyn_all_frames = _all_frames(inputs.dynamic, inputs.test_frames, len(inputs.test_names))
    syn_all = len(inputs.synthetic)
    syn_per_clip = (inputs.train_frames + inputs.val_frames) / max(1, len(inputs.train_names) + len(inputs.val_names))
    syn_all_frames = int(round(syn_per_clip * syn_all))
    workers = st.workers or default_workers()
    arch = inputs.teacher.arch if inputs.teacher is not None else (st.teacher_arch or "deeplabv3_resnet50")
    size = inputs.infer_size  # the clips' own size: the teacher runs at native resolution
    t_fps, t_basis = lookup(tp.teacher_fps, arch, size)
    t_gmac = tp.gmac.get(f"{arch}@{size}") or count_gmac(arch, size)
    label_frames = inputs.train_frames + inputs.val_frames
    steps: dict[str, PlanStep] = {}

    def add(name: str, **kw: Any) -> None:
        steps[name] = PlanStep(name=name, title="", done=name in done, **kw)

    checks = (("check-dynamic", dyn_all, dyn_all_frames), ("check-training", syn_all, syn_all_frames))
    for name, clips, frames in checks:
        add(name, resource="CPU", clips=clips, frames=frames, work=f"decode every frame once, {workers} worker(s)",
            seconds=_per_s(frames, tp.decode_fps * workers), tmac=None, disk_bytes=100.0 * clips,
            basis="decode+check frames/s per worker")
    add("label-training", resource="dev", clips=len(inputs.train_names) + len(inputs.val_names), frames=label_frames,
        work=f"{arch} forward on every frame", seconds=_per_s(label_frames, t_fps), tmac=label_frames * t_gmac / 1e3,
        disk_bytes=label_frames * tp.target_bytes_per_frame, basis=f"teacher frames/s ({t_basis})")
    add("label-test", resource="dev", clips=len(inputs.test_names), frames=inputs.test_frames,
        work=f"{arch} forward on every frame", seconds=_per_s(inputs.test_frames, t_fps),
        tmac=inputs.test_frames * t_gmac / 1e3, disk_bytes=inputs.test_frames * tp.target_bytes_per_frame,
        basis=f"teacher frames/s ({t_basis})")
    n_dev = _devices(st)
    for b, l in st.grid:
        name = st.config_name(b, l)
        train = st.epochs * len(inputs.train_names) * st.seq_len
        val = st.epochs * len(inputs.val_names) * st.seq_len
        tr_fps, tr_basis = lookup(tp.train_fps, name, st.frame_size)
        fw_fps, _ = lookup(tp.forward_fps, name, st.frame_size)
        cal_fps, _ = lookup(tp.forward_fps, name, inputs.infer_size)
        parts = [_per_s(train, tr_fps), _per_s(val, fw_fps), _per_s(inputs.val_frames, cal_fps)]
        seconds = None if None in parts else (parts[0] + parts[1]) / n_dev + parts[2]
        g_train, g_infer = student_gmac(b, l, st.frame_size), student_gmac(b, l, inputs.infer_size)
        params = _params(b, l)
        add(f"distill-{name}", resource="dev", clips=len(inputs.train_names) + len(inputs.val_names),
            frames=train + val + inputs.val_frames,
            work=(f"≤{st.epochs} epochs × ({len(inputs.train_names):,} train + "
                  f"{len(inputs.val_names):,} val windows "
                  f"× {st.seq_len} frames) at {st.frame_size} px + threshold calibration on VAL at "
                  f"{inputs.infer_size} px" + (f", over {n_dev} devices" if n_dev > 1 else "")),
            seconds=seconds,
            tmac=(TRAIN_MAC_FACTOR * train * g_train + val * g_train + inputs.val_frames * g_infer) / 1e3,
            disk_bytes=4 * params * (1 + 2 * 3) + LOG_BYTES_PER_EPOCH * st.epochs,
            basis=f"train frames/s ({tr_basis}); batched forward for val and calibration")
        s_fps, s_basis = lookup(tp.stream_fps, name, inputs.infer_size)
        add(f"predict-{name}", resource="dev", clips=len(inputs.test_names), frames=inputs.test_frames,
            work=f"stream every TEST frame at {inputs.infer_size} px", seconds=_per_s(inputs.test_frames, s_fps),
            tmac=inputs.test_frames * g_infer / 1e3,
            disk_bytes=inputs.test_frames * (tp.target_bytes_per_frame + 24), basis=f"streaming frames/s ({s_basis})")
    n_eval = len(st.grid) + 1
    for name in ["teacher"] + [st.config_name(b, l) for b, l in st.grid]:
        frames = inputs.test_frames * (2 if name != "teacher" else 1)  # students also read the teacher's masks
        add(f"evaluate-{name}", resource="CPU", clips=len(inputs.test_names), frames=frames,
            work="read and binarise the soft masks; Dice/IoU, aFD, bootstrap, figures",
            seconds=_per_s(frames, tp.mask_read_fps), tmac=None, disk_bytes=EVAL_REPORT_BYTES,
            basis="mask read frames/s")
    if len(st.grid) > 1:
        add("scaling", resource="CPU", clips=len(st.grid), frames=0, work="fit the scaling laws over the runs",
            seconds=5.0, tmac=None, disk_bytes=200_000, basis="seconds, measured on phantom sweeps")
    if st.echoclip:
        models = n_eval if st.echoclip_models == "all" else 2
        emb = inputs.test_frames * (1 + 2 * models)
        add("echoclip", resource="dev", clips=len(inputs.test_names), frames=emb,
            work=f"embed each TEST frame raw + 2 masked variants per model ({models} models)",
            seconds=_per_s(emb, tp.echoclip_fps),
            tmac=emb * tp.gmac["echoclip@224"] / 1e3 if tp.gmac.get("echoclip@224") else None,
            disk_bytes=emb * tp.embedding_bytes_per_frame, basis="ConvNeXt-Base image tower frames/s at 224 px")
    add("report", resource="CPU", clips=0, frames=0, work="collect the sub-reports", seconds=1.0, tmac=None,
        disk_bytes=100_000, basis="seconds")
    ordered = []
    for declared in declare_steps(st):
        step = steps[declared.name]
        step.title = declared.title
        ordered.append(step)
    return Plan(ordered, tp, inputs.frames_source, list(inputs.notes))


def _params(blocks: int, layers: int) -> int:
    from echodfkd.models.student import Student

    return int(sum(p.numel() for p in Student(blocks=blocks, layers=layers).parameters()))


def _all_frames(ds: Any, test_frames: int, test_clips: int) -> int:
    from echodfkd.reproduce.inputs import filelist_frames

    total = filelist_frames(ds, ds.names())
    return total if total is not None else int(round(test_frames / max(1, test_clips) * len(ds)))
