"""Where and how a distill run computes: the accelerator, Lightning's precision and the strategy."""

from __future__ import annotations

from typing import Any

from echodfkd.distill.config import LIGHTNING_PRECISION, DistillConfig, flag
from echodfkd.errors import ModelError


def resolve_accelerator(cfg: DistillConfig) -> str:
    """cuda or cpu for auto; gpu/cuda refused where torch sees no GPU (not a silent CPU run)."""
    import torch

    if cfg.accelerator == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if cfg.accelerator in ("gpu", "cuda"):
        if not torch.cuda.is_available():
            raise ModelError(f"{flag('accelerator')} {cfg.accelerator}: torch sees no CUDA GPU here; use "
                             f"{flag('accelerator')} cpu (or auto)")
        return "cuda"
    return cfg.accelerator


def lightning_precision(cfg: DistillConfig, accelerator: str) -> str:
    """Lightning's precision for the setting: fp32 -> 32-true, bf16 -> bf16-mixed, auto by the hardware."""
    import torch

    from echodfkd.hardware import cpu_has_native_bf16

    choice = cfg.precision
    if choice == "auto":
        # bf16 autocast only where the hardware has it (the loss stays fp32). On a 2-core AMD EPYC with
        # AVX512-BF16 a (4,1) training step at 56x56 took 0.55 s in bf16 against 1.0 s in fp32; CPUs without
        # native bf16 are slower in bf16, so full precision there.
        if accelerator == "cuda":
            choice = "bf16" if torch.cuda.is_bf16_supported() else "fp32"
        else:
            choice = "bf16" if accelerator == "cpu" and cpu_has_native_bf16() else "fp32"
    return LIGHTNING_PRECISION[choice]


def channels_last(cfg: DistillConfig, accelerator: str) -> bool:
    """Whether to train channels-last: the setting, on CPUs only (measured faster there; GPUs not measured)."""
    return bool(cfg.channels_last) and accelerator == "cpu"


def strategy(cfg: DistillConfig, accelerator: str) -> Any:
    """The Lightning strategy: DDP over gloo on CPUs, else the setting as given."""
    if cfg.strategy == "ddp" and accelerator == "cpu":
        from lightning.pytorch.strategies import DDPStrategy

        return DDPStrategy(process_group_backend="gloo")
    return cfg.strategy
