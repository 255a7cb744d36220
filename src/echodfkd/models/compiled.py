"""Ahead-of-time compiled streaming engine: the `StreamingStudent` step built into native code once.

torch.export captures one frame step at a fixed size; AOTInductor turns it into a shared library
(weights pre-packed for oneDNN, each ConvLSTM gate update fused into one vectorised loop, no Python
between operations) and packs it as a `.pt2` archive. Building takes ~10-30 s and needs a C++
compiler; the archive is cached under a key made of the weights, the size, the precision, the torch
version and the CPU's instruction set, so later runs load it in about a second.

The tanh of the gate update is computed from exp (inductor's `use_decompose_tanh`): about 2x faster
on CPUs and within 1e-6 of the library tanh, far below bf16 rounding.

What one frame costs (demo student, filters 12, 4 blocks, 56 px, mixed, measured on the 2-core EPYC):
the archive's generated code holds 9 fused C++ loops and 8 oneDNN convolution calls per frame (counted in
its kernel.cpp / wrapper.cpp); nothing else runs between them. A kernel profile of the same graph under
torch.compile (one thread, before the first layer was split and the decoder made sub-pixel) gave: the
fp32 first-layer convolution 24 %, the three bf16 ConvLSTM convolutions 31 % (~200 G multiply-adds/s,
near this CPU's bf16 peak of ~240 measured by a 1024^2 matmul), the three transposed decoder convolutions
16 %, the fused gate loops 14 %. The convolutions are compute-bound, so per-call overhead is small: the
112->56 resize and the tensor conversion outside the graph cost 3.9 us per frame (<0.5 %), and are kept
out of it. The engine's threads are torch's: two OpenMP threads on 56-px maps pay a fork/join per
operation, and a loaded machine breaks them. In one interleaved run at load average 6.2-6.5 on the 2
cores, the compiled mixed step at 56 px ran at a median of 712 fps on one thread and 12 fps on two
(libgomp spin-waits for a preempted partner); in a later run with OMP_WAIT_POLICY=PASSIVE (load ~10.5),
672 and 579. So `bench --threads 1` is worth measuring beside 2.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import platform
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import torch

from echodfkd.errors import ModelError
from echodfkd.io.atomic import atomic_path, save_json
from echodfkd.io.cache import cache_folder
from echodfkd.io.digest import state_dict_sha256
from echodfkd.models.fast import PRECISIONS, StreamingStudent, for_precision
from echodfkd.models.student import Student, check_frame_size

INDUCTOR_OPTIONS: dict[str, Any] = {"freezing": True, "cpp.use_decompose_tanh": True}
#: The precisions an engine can be compiled at (see `echodfkd.models.fast.PRECISIONS`).
DTYPES = {name: kw["dtype"] for name, kw in PRECISIONS.items()}
#: Bump when the engine's graph changes, so stale archives are rebuilt rather than loaded.
ENGINE_VERSION = 4  # 2: state outputs forced to the input layout, mixed splits its first layer; 3: sub-pixel
# decoder; 4: transposed decoder again (sub-pixel was slower on 2 threads)
#: Engines for several streams use the decoder's sub-pixel form (plain convolutions with 4x the outputs, then
#: pixel_shuffle): with 16 rows a call it is the faster form, with one row the transposed one is
#: (`echodfkd.models.fast`). The two give the same outputs to float rounding and hold no state.
BATCHED_SUBPIXEL = True


def _cpu_signature() -> str:
    """The CPU model and feature flags: compiled code may use any instruction the builder's CPU had."""
    from echodfkd.hardware import cpu_flags

    flags = cpu_flags()
    return " ".join(sorted(flags)) if flags else (platform.processor() or platform.machine())


def engine_key(student: Student, size: tuple[int, int], precision: str, batch: int = 1) -> str:
    """Content hash naming a compiled engine: weights, config, size, precision, batch, torch and CPU."""
    digest = hashlib.sha256(state_dict_sha256(student).encode())
    arch = {k: student.config.get(k) for k in ("blocks", "layers", "filters", "skip", "residual",
                                               "out_channels", "in_channels", "input_mean", "input_std")}
    meta = dict(arch=arch, size=list(size), precision=precision, torch=torch.__version__,
                cpu=_cpu_signature(), options=INDUCTOR_OPTIONS, engine=ENGINE_VERSION)
    if batch != 1:  # batch-1 keys stay as they were, so cached single-stream engines remain valid
        meta["batch"] = batch
        meta["subpixel_decoder"] = _subpixel(batch)
    recipe = {k: str(v) for k, v in PRECISIONS.get(precision, {}).items() if k != "dtype"}
    if recipe:  # a mixed recipe changes the graph: its settings name the archive (fp32/bf16 keys unchanged)
        meta["recipe"] = recipe
    digest.update(json.dumps(meta, sort_keys=True).encode())
    return digest.hexdigest()[:20]


def _subpixel(batch: int) -> bool:
    """Whether the engine for `batch` streams uses the decoder's sub-pixel form."""
    return BATCHED_SUBPIXEL and batch > 1


def find_compiler() -> str | None:
    """The C++ compiler inductor would use ($CXX, g++, c++ or clang++), or None."""
    for name in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        if name and shutil.which(name):
            return name
    return None


@contextlib.contextmanager
def _quiet_toolchain_logs():
    """Hide torch's C++-toolchain chatter (e.g. "No CUDA runtime is found") on a CPU-only machine."""
    logger = logging.getLogger("torch.utils.cpp_extension")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def compile_engine(engine: StreamingStudent, size: tuple[int, int], path: str | os.PathLike, batch: int = 1) -> Path:
    """Build the compiled step of a (CPU) streaming engine for `batch` streams of (H, W) frames into `path` (atomic)."""
    if find_compiler() is None:
        raise ModelError("compiling the streaming engine needs a C++ compiler (g++ or clang++) on PATH; "
                         "install one (e.g. `apt-get install g++`) or run without --compile")
    h, w = size
    frame = torch.full((batch, 1, h, w), 64.0)
    example = (frame, *engine.init_state(batch, h, w).flat())
    path = Path(path)
    try:
        with torch.no_grad(), _quiet_toolchain_logs():
            program = torch.export.export(engine, example)
            with atomic_path(path, suffix=".pt2") as tmp:
                torch._inductor.aoti_compile_and_package(program, package_path=str(tmp),
                                                         inductor_configs=dict(INDUCTOR_OPTIONS))  # it adds keys
    except Exception as exc:  # the export/compile stack raises many exception types
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise ModelError(f"{path}: compiling the streaming engine failed ({type(exc).__name__}: {first})") from None
    return path


class CompiledStreamer:
    """A loaded compiled engine: `init_state()` then `step(frame, state) -> (logits, state)` (flat lists)."""

    def __init__(self, path: str | os.PathLike, engine: StreamingStudent, size: tuple[int, int], batch: int = 1) -> None:
        self.path, self.size, self._engine, self.batch = Path(path), size, engine, batch
        try:
            with _quiet_toolchain_logs():
                self._run: Callable = torch._inductor.aoti_load_package(str(self.path))
        except Exception as exc:  # a damaged or foreign archive
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise ModelError(f"{self.path}: not a loadable compiled engine ({first}); delete it to rebuild") from None

    def init_state(self) -> list[torch.Tensor]:
        """Zero state for the archive's `batch` streams, in the layout it was built for."""
        return self._engine.init_state(self.batch, *self.size).flat()

    def step(self, frame: torch.Tensor, state: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """One float32 frame (1, 1, H, W) on the 0-255 scale -> logits (1, C, H, W) and the new flat state."""
        out = self._run(frame, *state)
        return out[0], list(out[1:])


def load_or_compile(student: Student, size: tuple[int, int], precision: str = "fp32",
                    directory: str | os.PathLike | None = None,
                    log: Callable[[str], None] | None = None, batch: int = 1) -> CompiledStreamer:
    """The compiled engine for this student, size, precision and batch: loaded from the cache, else built there."""
    size = (int(size[0]), int(size[1]))
    for side in size:
        check_frame_size(side, student.blocks, "size", ModelError)
    if precision not in DTYPES:
        raise ModelError(f"precision must be one of {tuple(DTYPES)}, got {precision!r}")
    student = student.cpu().eval()
    folder = Path(directory) if directory is not None else cache_folder("compiled")
    key = engine_key(student, size, precision, batch)
    tag = f"-b{batch}" if batch != 1 else ""
    path = folder / f"student-{size[0]}x{size[1]}{tag}-{precision}-{key}.pt2"
    engine = for_precision(student, precision, subpixel_decoder=_subpixel(batch))
    if not path.is_file():
        if log:
            log(f"compiling the {size[0]}x{size[1]}{tag} {precision} streaming engine once (cached in {folder}) ...")
        t0 = time.perf_counter()
        compile_engine(engine, size, path, batch)
        save_json(path.with_suffix(".json"), {
            "key": key, "size": list(size), "batch": batch, "precision": precision, "torch": torch.__version__,
            "build_seconds": round(time.perf_counter() - t0, 1), "config": student.config})
        if log:
            log(f"compiled in {time.perf_counter() - t0:.0f} s: {path}")
    return CompiledStreamer(path, engine, size, batch)
