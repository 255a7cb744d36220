"""Throughputs behind `echodfkd reproduce --dry-run`: the reference constants and the code that measures them.

Every number is measured, never assumed: `measure_throughputs()` times each kind of work (decoding and
checking clips, the teacher forward pass, student training steps, batched student forwards, streaming
prediction, the EchoCLIP image tower) with random weights on random or phantom frames, and the size of
the files a step writes. `REFERENCE` holds what `benchmarks/bench_reproduce.py` printed on our build
machine; `echodfkd reproduce --dry-run --measure` runs the same code on the machine that will do the
work (its GPU included). Speed depends on the architecture and the input size, not on the weights.
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np


@dataclass
class Throughput:
    """Measured speeds (frames/s) and output sizes (bytes/frame) on one machine."""

    machine: str
    source: str
    decode_fps: float                                       # one check worker: decode + frame checks, 112 px
    teacher_fps: dict[str, float] = field(default_factory=dict)  # "arch@size" -> frames/s
    train_fps: dict[str, float] = field(default_factory=dict)    # "b4_l1@56" -> frames/s (fwd+BCE+bwd+Adam)
    forward_fps: dict[str, float] = field(default_factory=dict)  # "b4_l1@56" -> frames/s, batched, no grad
    stream_fps: dict[str, float] = field(default_factory=dict)   # "b4_l1@112" -> frames/s through Predictor
    echoclip_fps: float | None = None                      # ConvNeXt-Base image tower at 224 px
    mask_read_fps: float = 0.0                             # evaluate: load + binarise soft masks, 112 px
    target_bytes_per_frame: float = 0.0                    # compressed soft mask npz, 112 px
    embedding_bytes_per_frame: float = 0.0                 # EchoCLIP cache, one 512-d float32 row
    gmac: dict[str, float] = field(default_factory=dict)   # "arch@size" -> GMAC/frame (FlopCounterMode)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready view."""
        return asdict(self)


def key(blocks: int, layers: int, size: int) -> str:
    """Table key of a student configuration at a frame size."""
    return f"b{blocks}_l{layers}@{size}"


def lookup(table: dict[str, float], name: str, size: int) -> tuple[float | None, str]:
    """Frames/s of `name` ("b4_l1" or an arch) at `size`: measured, else scaled from the nearest measured size.

    Scaling assumes time proportional to pixel count (convolutions); the second value says which was used.
    """
    exact = table.get(f"{name}@{size}")
    if exact:
        return float(exact), "measured"
    sizes = [int(k.split("@")[1]) for k in table if k.split("@")[0] == name and table[k]]
    if not sizes:
        return None, "not measured"
    near = min(sizes, key=lambda s: (abs(np.log(s / size)), s))
    return float(table[f"{name}@{near}"]) * (near / size) ** 2, f"scaled from {near} px by pixel count"


# ---------------------------------------------------------------------- the reference machine
#: Measured on the build machine with `python benchmarks/bench_reproduce.py --threads 1` (twice: 3 then 5 timed
#: repeats, `--merge` keeping each figure's faster run). One core of an Intel Xeon (Sapphire Rapids) KVM guest
#: with 2 vCPUs shared with other jobs, torch 2.14.1 CPU kernels, 2026-11-29. Three significant digits.
REFERENCE = Throughput(
    machine="one core of an Intel Xeon (Sapphire Rapids) KVM guest, 1 torch thread, torch 2.14.1",
    source="benchmarks/bench_reproduce.py, 2026-11-29",
    decode_fps=6250.0,
    teacher_fps={"deeplabv3_resnet50@112": 6.37, "lraspp_mobilenet_v3_large@112": 114.0},
    train_fps={
        "b1_l1@56": 58.5, "b1_l2@56": 40.2, "b1_l3@56": 27.4, "b1_l4@56": 18.5,
        "b2_l1@56": 34.5, "b2_l2@56": 18.5, "b2_l3@56": 14.3, "b2_l4@56": 8.72,
        "b3_l1@56": 39.9, "b3_l2@56": 20.1, "b3_l3@56": 13.8, "b3_l4@56": 10.1,
        "b4_l1@56": 34.0, "b4_l2@56": 17.9, "b4_l3@56": 11.9, "b4_l4@56": 8.95,
    },
    forward_fps={
        "b1_l1@56": 465.0, "b1_l2@56": 162.0, "b1_l3@56": 156.0, "b1_l4@56": 136.0,
        "b2_l1@56": 178.0, "b2_l2@56": 92.9, "b2_l3@56": 93.3, "b2_l4@56": 65.5,
        "b3_l1@56": 180.0, "b3_l2@56": 116.0, "b3_l3@56": 64.5, "b3_l4@56": 57.5,
        "b4_l1@56": 155.0, "b4_l2@56": 87.2, "b4_l3@56": 55.6, "b4_l4@56": 38.3,
    },
    stream_fps={
        "b1_l1@112": 147.0, "b1_l2@112": 116.0, "b1_l3@112": 61.3, "b1_l4@112": 32.9,
        "b2_l1@112": 83.4, "b2_l2@112": 46.4, "b2_l3@112": 37.2, "b2_l4@112": 24.8,
        "b3_l1@112": 77.0, "b3_l2@112": 39.4, "b3_l3@112": 24.9, "b3_l4@112": 18.9,
        "b4_l1@112": 64.9, "b4_l2@112": 28.9, "b4_l3@112": 19.6, "b4_l4@112": 13.6,
    },
    echoclip_fps=1.65,
    mask_read_fps=47900.0,
    target_bytes_per_frame=277.0,
    embedding_bytes_per_frame=1900.0,
    gmac={"deeplabv3_resnet50@112": 7.83, "lraspp_mobilenet_v3_large@112": 0.0954, "echoclip@224": 15.4},
)


# ---------------------------------------------------------------------- measuring
def describe_machine(device: str, threads: int) -> str:
    """One line naming the CPU (or GPU), the torch version and the threads used."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    where = f"{cpu}, {threads} torch thread(s)"
    if device.startswith("cuda") and torch.cuda.is_available():
        where = f"{torch.cuda.get_device_name(torch.device(device))} (host: {where})"
    return f"{where}, torch {torch.__version__}"


def _best_rate(fn: Callable[[], int], repeats: int = 3, sync: Callable[[], None] = lambda: None) -> float:
    """Frames/s of `fn` (returns frames done): one warm-up call, then the best of `repeats` timed calls."""
    fn()
    sync()
    best = 0.0
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        frames = fn()
        sync()
        best = max(best, frames / max(time.perf_counter() - start, 1e-9))
    return best


def _sync(device: str) -> Callable[[], None]:
    import torch

    return torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)


def phantom_frames(size: int = 112, frames: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """A realistic-looking clip and its LV masks from our phantom (frames uint8 (T,H,W), masks bool)."""
    from echodfkd.data.phantom import make_clip

    clip = make_clip(0, 0, "synthetic", size, frames=max(frames, 64))
    return clip.frames[:frames], clip.lv[:frames]


def measure_decode(frames: np.ndarray, repeats: int = 3) -> float:
    """Frames/s of one check worker (MJPEG decode + blank/noise statistics) on a 112 px clip."""
    from echodfkd.data.video_checks import CheckConfig, inspect_video
    from echodfkd.io.video import write_video

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "clip.avi"
        write_video(path, frames, 50.0)
        return _best_rate(lambda: len(frames) if inspect_video("clip", path, None, CheckConfig()) else 0, repeats)


def measure_teacher(arch: str, device: str, size: int = 112, batch: int = 16, repeats: int = 3) -> float:
    """Frames/s of a randomly initialised teacher on uint8 frames (batched, inference mode)."""
    import torch

    from echodfkd.teacher.model import Teacher, build_segmenter

    teacher = Teacher(build_segmenter(arch), arch=arch).to(device).eval()
    x = torch.randint(0, 256, (batch, size, size), dtype=torch.uint8)

    def run() -> int:
        with torch.inference_mode():
            teacher(x, chunk=batch)
        return batch

    return _best_rate(run, repeats, _sync(device))


def _autocast(device: str):
    import contextlib

    import torch

    if device.startswith("cuda") and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def measure_student(blocks: int, layers: int, device: str, train_size: int, stream_size: int,
                    batch: int = 4, seq_len: int = 25, repeats: int = 3) -> dict[str, float]:
    """Frames/s of one (B, l) student: training steps and batched forwards at `train_size`, streaming at
    `stream_size` through the Predictor (the predict step's path)."""
    import torch
    import torch.nn.functional as F

    from echodfkd.models.student import Student
    from echodfkd.stream.predictor import Predictor

    student = Student(blocks=blocks, layers=layers).to(device)
    opt = torch.optim.Adam(student.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (batch, seq_len, 1, train_size, train_size), generator=g).float().to(device)
    y = torch.rand((batch, seq_len, 1, train_size, train_size), generator=g).to(device)
    sync = _sync(device)

    def train() -> int:
        student.train()
        with _autocast(device):
            logits = student(x)
        loss = F.binary_cross_entropy_with_logits(logits.float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return batch * seq_len

    def forward() -> int:
        student.eval()
        with torch.inference_mode(), _autocast(device):
            student(x)
        return batch * seq_len

    out = {"train": _best_rate(train, repeats, sync), "forward": _best_rate(forward, repeats, sync)}
    predictor = Predictor(student.eval(), device=device, size=stream_size)
    clip = np.random.default_rng(0).integers(0, 256, (seq_len, stream_size, stream_size), dtype=np.uint8)
    out["stream"] = _best_rate(lambda: len(predictor.predict_clip(clip, 50.0).areas), repeats, sync)
    return out


def measure_echoclip(device: str, frames: int = 4, repeats: int = 2) -> tuple[float, float]:
    """(frames/s, GMAC/frame) of a ConvNeXt-Base open_clip image tower at 224 px (EchoCLIP's), random
    weights, including the validation transform of 112 px grayscale frames."""
    import open_clip
    import torch

    model, _, preprocess = open_clip.create_model_and_transforms("convnext_base_w", device=device,
                                                                 force_image_size=224)
    model.eval()
    gmac = _tower_gmac(model.visual, device)
    from PIL import Image

    clip = np.random.default_rng(0).integers(0, 256, (frames, 112, 112), dtype=np.uint8)

    def run() -> int:
        images = torch.stack([preprocess(Image.fromarray(f).convert("RGB")) for f in clip]).to(device)
        with torch.inference_mode(), _autocast(device):
            model.encode_image(images)
        return frames

    return _best_rate(run, repeats, _sync(device)), gmac


def _tower_gmac(visual: Any, device: str) -> float:
    """GMAC of one 224 px image through an image tower (FlopCounterMode)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        visual(torch.zeros(1, 3, 224, 224, device=device))
    return counter.get_total_flops() / 2 / 1e9


def soft_masks(masks: np.ndarray, edge_px: float = 1.0) -> np.ndarray:
    """Soft uint8 masks like a confident segmenter's: round(255·sigmoid(signed distance / edge_px)).

    A sharp interior and a soft 1-2 px rim, which is how teacher and student outputs look; used as the
    proxy for the size of mask files.
    """
    from scipy import ndimage

    soft = np.empty(masks.shape, np.uint8)
    for t, m in enumerate(masks):
        d = ndimage.distance_transform_edt(m) - ndimage.distance_transform_edt(~m)
        soft[t] = np.round(255.0 / (1.0 + np.exp(-d / edge_px))).astype(np.uint8)
    return soft


def measure_masks(masks: np.ndarray, repeats: int = 3) -> tuple[float, float]:
    """(bytes per frame of a compressed soft-mask npz, frames/s of loading and binarising it)."""
    from echodfkd.evaluate.predictions import load_masks
    from echodfkd.io.atomic import save_npz
    from echodfkd.measures.masks import binarize

    soft = soft_masks(masks)
    with tempfile.TemporaryDirectory() as tmp:
        path = save_npz(Path(tmp) / "x.npz", masks=soft)
        size = os.path.getsize(path) / len(masks)
        rate = _best_rate(lambda: int(binarize(load_masks(path), 0.5).sum(axis=(1, 2)).size), repeats)
    return size, rate


def count_gmac(arch: str, size: int = 112) -> float:
    """GMAC per frame of a teacher architecture, counted with FlopCounterMode."""
    from echodfkd.models.flops import count_gmac_per_frame
    from echodfkd.teacher.model import Teacher, build_segmenter

    return count_gmac_per_frame(Teacher(build_segmenter(arch), arch=arch), size)


def student_gmac(blocks: int, layers: int, size: int) -> float:
    """GMAC per streamed frame of a (B, l) student, counted with FlopCounterMode."""
    from echodfkd.models.flops import count_gmac_per_frame
    from echodfkd.models.student import Student

    return count_gmac_per_frame(Student(blocks=blocks, layers=layers), size)


def measure_throughputs(device: str = "cpu", grid: Sequence[tuple[int, int]] = ((4, 1),),
                        train_size: int = 56, stream_size: int = 112,
                        teacher_archs: Sequence[str] = ("deeplabv3_resnet50",), echoclip: bool = True,
                        threads: int | None = None, source: str = "measured", repeats: int = 3,
                        echo: Callable[[str], None] = lambda msg: None) -> Throughput:
    """Time every kind of work of the reproduce chain on this machine (a minute or two on a GPU)."""
    import torch

    if threads:
        torch.set_num_threads(int(threads))
    frames, masks = phantom_frames(112, 64)
    echo("timing clip decoding and checks")
    tp = Throughput(machine=describe_machine(device, torch.get_num_threads()), source=source,
                    decode_fps=measure_decode(frames))
    tp.target_bytes_per_frame, tp.mask_read_fps = measure_masks(masks)
    echo(f"  decode {tp.decode_fps:.1f} frames/s; masks {tp.target_bytes_per_frame:.0f} B/frame, "
         f"read {tp.mask_read_fps:.0f} frames/s")
    for arch in teacher_archs:
        echo(f"timing the teacher {arch}")
        tp.teacher_fps[f"{arch}@112"] = measure_teacher(arch, device, 112, batch=64 if device != "cpu" else 8,
                                                        repeats=repeats)
        tp.gmac[f"{arch}@112"] = count_gmac(arch, 112)
        echo(f"  {arch}: {tp.teacher_fps[f'{arch}@112']:.2f} frames/s")
    if echoclip:
        echo("timing the EchoCLIP image tower")
        tp.echoclip_fps, tp.gmac["echoclip@224"] = measure_echoclip(device, frames=32 if device != "cpu" else 2)
        echo(f"  EchoCLIP tower: {tp.echoclip_fps:.2f} frames/s")
    for b, l in grid:
        echo(f"timing student ({b},{l})")
        speeds = measure_student(b, l, device, train_size, stream_size,
                                 batch=32 if device != "cpu" else 2, repeats=repeats)
        tp.train_fps[key(b, l, train_size)] = speeds["train"]
        tp.forward_fps[key(b, l, train_size)] = speeds["forward"]
        tp.stream_fps[key(b, l, stream_size)] = speeds["stream"]
        echo(f"  ({b},{l}): train {speeds['train']:.1f}, forward {speeds['forward']:.1f} frames/s at {train_size} px; "
             f"stream {speeds['stream']:.1f} frames/s at {stream_size} px")
    tp.embedding_bytes_per_frame = _embedding_bytes()
    return tp


def _embedding_bytes(dim: int = 512, frames: int = 64) -> float:
    """Bytes per frame of the EchoCLIP embedding cache (float32 rows, npz-compressed)."""
    from echodfkd.io.atomic import save_npz

    emb = np.random.default_rng(0).standard_normal((frames, dim)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    with tempfile.TemporaryDirectory() as tmp:
        return os.path.getsize(save_npz(Path(tmp) / "e.npz", emb=emb)) / frames
