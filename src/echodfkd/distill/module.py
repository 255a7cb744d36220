"""The distillation LightningModule: a student trained on the teacher's soft masks."""

from __future__ import annotations

import logging
import random
from typing import Any, Callable

import lightning.pytorch as pl
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from echodfkd.data.augment import AugmentSettings, EchoAugment
from echodfkd.distill.config import INITS, SCHEDULES
from echodfkd.models.student import Student

log = logging.getLogger(__name__)


def init_weights(student: nn.Module, scheme: str) -> None:
    """Re-initialise every conv weight with `scheme` (biases to zero); "default" keeps PyTorch's init."""
    if scheme not in INITS:
        raise ValueError(f"init must be one of {INITS}, got {scheme!r}")
    if scheme == "default":
        return
    for m in student.modules():
        if isinstance(m, nn.Conv2d):
            if scheme == "xavier":
                nn.init.xavier_uniform_(m.weight)
            elif scheme == "kaiming":
                nn.init.kaiming_normal_(m.weight, nonlinearity="linear")
            else:
                nn.init.orthogonal_(m.weight)  # rows = output channels, trailing dims flattened
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def compile_forward(student: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """`student.forward` under torch.compile: one graph per window shape (dynamic=False), fused gate math."""
    import torch._dynamo

    # train and val windows, a short last batch, bf16 autocast on or off: a few graphs, not the default 8
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 32)
    return torch.compile(student.forward, dynamic=False)


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - soft Dice, per sample and channel over (T, H, W), averaged; target in [0, 1]."""
    prob = torch.sigmoid(logits.float())
    dims = (1, 3, 4)  # (N, T, C, H, W): pool time and space
    inter = (prob * target).sum(dims)
    total = prob.sum(dims) + target.sum(dims)
    return (1.0 - (2.0 * inter + eps) / (total + eps)).mean()


def rng_states() -> dict[str, Any]:
    """torch (CPU and CUDA), numpy and python `random` states as tensors and plain values (weights_only-safe)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, inner, py_gauss = random.getstate()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "gauss": float(gauss)},
            "python": {"version": version, "state": list(inner), "gauss": py_gauss}}


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore what `rng_states` saved (CUDA only when the device count matches)."""
    torch.set_rng_state(states["torch"])
    cuda = states.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    n = states["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    py = states["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))


class DistillModule(pl.LightningModule):
    """Student + soft-target loss (BCE with logits, optional Dice term) + Adam with an optional schedule."""

    def __init__(self, student: dict[str, Any], lr: float = 1e-3, dice_weight: float = 0.0,
                 lr_schedule: str = "none", max_epochs: int = 400, init: str = "default",
                 weight_decay: float = 0.0, augment: float = 0.0, compile: bool = False,
                 fused_gates: bool = False, channels_last: bool = False, compile_gates: bool = False) -> None:
        super().__init__()
        if lr_schedule not in SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {SCHEDULES}, got {lr_schedule!r}")
        # Only JSON-like values here: the checkpoint must load with torch.load(weights_only=True).
        self.save_hyperparameters()
        self.student = Student(**student)
        init_weights(self.student, init)
        self.augment = EchoAugment(AugmentSettings(strength=augment)) if augment > 0 else None
        if fused_gates:  # same values, one fused backward per gate update (distill/fused.py)
            from echodfkd.distill.fused import use_fused_update

            use_fused_update(self.student, compiled=compile_gates)
        if channels_last:  # same values; faster convolutions after the first block (Student.use_channels_last)
            self.student.use_channels_last()
        # The training forward compiled once per window shape (the ConvLSTM unrolled over seq_len); the
        # weights stay the eager module's, so checkpoints and state dicts are unchanged.
        self._compiled = compile_forward(self.student) if compile else None
        self.compiled = compile

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Student logits (N, T, C, H, W) for frames (N, T, 1, H, W) on the 0-255 scale."""
        return self.student(x)

    def _train_forward(self, x: torch.Tensor) -> torch.Tensor:
        """The compiled forward while it works; any compile failure falls back to eager with one line."""
        if self._compiled is None or not torch.is_grad_enabled():
            return self.student(x)
        try:
            return self._compiled(x)
        except Exception as exc:  # noqa: BLE001 - a compiler fault of any kind: train eagerly instead
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
            log.warning("distill: torch.compile failed (%s: %s); training without it", type(exc).__name__, reason)
            self._compiled, self.compiled = None, False
            return self.student(x)

    def _losses(self, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
        frames, targets = batch
        logits = self._train_forward(frames.float())
        prob = targets.float() / 255.0
        # BCE in float32 even under bf16 autocast: the soft targets need the precision.
        bce = F.binary_cross_entropy_with_logits(logits.float(), prob)
        out = {"bce": bce, "loss": bce}
        if self.hparams.dice_weight > 0:
            out["dice"] = soft_dice_loss(logits, prob)
            out["loss"] = bce + self.hparams.dice_weight * out["dice"]
        return out

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        """One optimisation step on a batch of (augmented) windows."""
        if self.augment is not None:
            frames, targets = batch
            with torch.no_grad():
                x, y = self.augment(frames[:, :, 0].float(), targets.float())
            batch = (x[:, :, None], y.clamp_(0.0, 255.0))
        losses = self._losses(batch)
        n = batch[0].shape[0]
        self.log("train_loss", losses["loss"], on_step=False, on_epoch=True, prog_bar=True, batch_size=n,
                 sync_dist=True)
        return losses["loss"]

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> None:
        """Validation losses (val_loss drives checkpoints and early stopping; val_bce compares runs)."""
        losses = self._losses(batch)
        n = batch[0].shape[0]
        self.log("val_loss", losses["loss"], prog_bar=True, batch_size=n, sync_dist=True)
        self.log("val_bce", losses["bce"], batch_size=n, sync_dist=True)
        if "dice" in losses:
            self.log("val_dice_loss", losses["dice"], batch_size=n, sync_dist=True)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the global RNG states (the augmentation draws from torch's) so a resumed run draws alike."""
        checkpoint["rng_states"] = rng_states()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Restore the RNG states of the checkpoint's moment (older checkpoints have none)."""
        if "rng_states" in checkpoint:
            set_rng_states(checkpoint["rng_states"])

    def configure_optimizers(self) -> Any:
        """Adam (lr 1e-3 by default) with no schedule, cosine annealing, or a x0.1 step every third of the run."""
        hp = self.hparams
        opt = torch.optim.Adam(self.student.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
        if hp.lr_schedule == "none":
            return opt
        if hp.lr_schedule == "cosine":
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, hp.max_epochs))
        else:
            sched = torch.optim.lr_scheduler.StepLR(opt, step_size=max(1, hp.max_epochs // 3), gamma=0.1)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
