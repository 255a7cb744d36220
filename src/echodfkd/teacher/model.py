"""Teachers: torchvision segmenters with a 1-channel head, EchoNet checkpoint loading and saving.

EchoNet-Dynamic's teacher is `deeplabv3_resnet50(aux_loss=False)` with `classifier[-1]` replaced by a
256->1 1x1 conv, trained under DataParallel (state-dict keys prefixed `module.`) and fed RGB frames
(3 equal channels) normalised with its train-set mean/std. Lighter torchvision segmenters go through
the same wrapper so a teacher can serve on a CPU.
"""

from __future__ import annotations

import os
import pickle
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from echodfkd.errors import ModelError
from echodfkd.io.digest import state_dict_sha256
from echodfkd.teacher.archs import ARCHS, DEFAULT_ARCH

#: EchoNet-Dynamic's train-set statistics (per RGB channel, 0-255 scale).
ECHONET_MEAN = (32.085175, 32.591923, 33.37932)
ECHONET_STD = (50.129288, 50.487717, 51.34619)


def build_segmenter(arch: str = DEFAULT_ARCH) -> nn.Module:
    """A randomly initialised 1-channel torchvision segmenter of a registered architecture (`teacher.archs`)."""
    spec = ARCHS.get(arch)
    if spec is None:
        raise ModelError(f"unknown teacher architecture {arch!r} (choose from {', '.join(ARCHS)})")
    from torchvision.models import segmentation

    kwargs: dict[str, Any] = {"weights": None, "weights_backbone": None}
    if spec.aux_loss is not None:
        kwargs["aux_loss"] = spec.aux_loss
    if not spec.swap_head:
        return getattr(segmentation, spec.name)(num_classes=1, **kwargs)
    model = getattr(segmentation, spec.name)(**kwargs)
    model.classifier[-1] = nn.Conv2d(model.classifier[-1].in_channels, 1, kernel_size=1)
    return model


def _triple(values: Sequence[float] | float | None, default: Sequence[float], what: str) -> tuple[float, ...]:
    if values is None:
        return tuple(float(v) for v in default)
    vals = [float(values)] * 3 if np.isscalar(values) else [float(v) for v in values]  # type: ignore[arg-type]
    if len(vals) == 1:
        vals = vals * 3
    if len(vals) != 3 or not all(np.isfinite(vals)):
        raise ModelError(f"teacher {what} must be one or three finite numbers, got {values!r}")
    if what == "std" and min(vals) <= 0:
        raise ModelError(f"teacher std must be positive, got {values!r}")
    return tuple(vals)


class Teacher(nn.Module):
    """A segmenter plus its input normalisation: uint8 grayscale frames (T,H,W) -> logits (T,H,W)."""

    def __init__(self, model: nn.Module, arch: str = DEFAULT_ARCH, mean: Sequence[float] | float | None = None,
                 std: Sequence[float] | float | None = None, chunk: int = 64) -> None:
        super().__init__()
        # NHWC weights let oneDNN use its fast convolution kernels: ~1.45x frames per CPU-second for
        # deeplabv3_resnet50 and lraspp_mobilenet_v3_large at 112x112 (logits equal to ~1e-5).
        self.model = model.to(memory_format=torch.channels_last)
        self.arch = arch
        self.mean = _triple(mean, ECHONET_MEAN, "mean")
        self.std = _triple(std, ECHONET_STD, "std")
        #: Most frames sent through the network at once (bounds memory on long clips).
        self.chunk = int(chunk)
        self.register_buffer("_mean", torch.tensor(self.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(self.std).view(1, 3, 1, 1), persistent=False)

    @property
    def normalisation(self) -> dict[str, list[float]]:
        """The input normalisation as plain lists (for JSON and checkpoints)."""
        return {"mean": list(self.mean), "std": list(self.std)}

    @property
    def device(self) -> torch.device:
        """Device of the weights."""
        return next(self.model.parameters()).device

    def num_parameters(self) -> int:
        """Number of parameters of the segmenter."""
        return sum(p.numel() for p in self.model.parameters())

    def _logits(self, gray: torch.Tensor) -> torch.Tensor:
        # EchoNet feeds the gray frame as 3 equal RGB channels, each normalised with its own mean/std.
        x = (gray.unsqueeze(1) - self._mean) / self._std
        return self.model(x)["out"][:, 0]

    def forward(self, frames: np.ndarray | torch.Tensor, chunk: int | None = None) -> torch.Tensor:
        """Logits (T,H,W) on the model's device for grayscale frames (T,H,W) (or one frame (H,W)), 0-255 scale.

        Frames go through the network `chunk` at a time (default `self.chunk`) to bound memory.
        """
        chunk = int(chunk or self.chunk)
        x = torch.as_tensor(np.ascontiguousarray(frames) if isinstance(frames, np.ndarray) else frames)
        single = x.dim() == 2
        if single:
            x = x.unsqueeze(0)
        if x.dim() != 3:
            raise ValueError(f"expected grayscale frames (T, H, W), got shape {tuple(x.shape)}")
        x = x.to(self.device, dtype=self._mean.dtype, non_blocking=True)
        if len(x) <= chunk:
            out = self._logits(x)
        else:
            out = torch.cat([self._logits(x[i:i + chunk]) for i in range(0, len(x), chunk)])
        return out[0] if single else out


def weights_hash(model: nn.Module) -> str:
    """SHA-256 (hex) of a model's weights: names, dtypes, shapes and bytes of its state dict."""
    return state_dict_sha256(model.model if isinstance(model, Teacher) else model)


# ---------------------------------------------------------------------- checkpoints
def save_echonet_checkpoint(model: nn.Module, path: str | os.PathLike, epoch: int = 0,
                            best_loss: float = float("nan"), loss: float = float("nan"),
                            opt_dict: dict | None = None, scheduler_dict: dict | None = None,
                            arch: str | None = None, state_dict: dict[str, torch.Tensor] | None = None,
                            **extra: Any) -> Path:
    """Write EchoNet's checkpoint format (`module.`-prefixed state_dict + training fields), atomically.

    Extra keys record the teacher's arch and normalisation (plain types, so `weights_only` loading works).
    `state_dict` replaces the model's current weights (e.g. a kept best epoch).
    """
    from echodfkd.io.atomic import atomic_path

    path = Path(path)
    teacher = model if isinstance(model, Teacher) else None
    net = teacher.model if teacher is not None else model
    weights = net.state_dict() if state_dict is None else state_dict
    state = {f"module.{k}": v.detach().cpu() for k, v in weights.items()}
    checkpoint: dict[str, Any] = {
        "epoch": int(epoch), "state_dict": state, "best_loss": float(best_loss), "loss": float(loss),
        "opt_dict": opt_dict or {}, "scheduler_dict": scheduler_dict or {},
    }
    arch = arch or (teacher.arch if teacher is not None else None)
    if arch is not None:
        checkpoint["arch"] = str(arch)
    if teacher is not None:
        checkpoint["mean"], checkpoint["std"] = list(teacher.mean), list(teacher.std)
    checkpoint.update(extra)
    with atomic_path(path, suffix=path.suffix or ".pt") as tmp:
        torch.save(checkpoint, tmp)
    return path


def _read_checkpoint(path: Path, device: str | torch.device) -> Any:
    """torch.load with weights_only=True, every failure turned into one ModelError line."""
    if not path.exists():
        raise ModelError(f"{path}: teacher checkpoint not found")
    if path.is_dir():
        raise ModelError(f"{path}: is a folder, not a teacher checkpoint (.pt file)")
    if path.stat().st_size == 0:
        raise ModelError(f"{path}: empty file (0 bytes), not a teacher checkpoint")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path), device=str(device))
        except (SafetensorError, OSError) as exc:
            raise ModelError(f"{path}: not a readable safetensors file ({exc})") from None
    with open(path, "rb") as fh:
        head = fh.read(4)
    # torch.save writes a zip archive (PK..) or, in the legacy format, a pickle (protocol byte 0x80).
    if not (head.startswith(b"PK") or head.startswith(b"\x80")):
        raise ModelError(f"{path}: not a PyTorch checkpoint (neither a zip archive nor a pickle; "
                         f"it starts with {head!r})")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)   # pickle-protocol chatter on foreign files
            return torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        if "Weights only load failed" in text or "Unsupported global" in text or "GLOBAL" in text:
            what = next((line.strip() for line in text.splitlines() if "Unsupported global" in line), "")
            raise ModelError(
                f"{path}: refused: the file holds pickled Python objects, not just tensors "
                f"({what or 'needs arbitrary classes'}); loading it could run arbitrary code. "
                "Re-save the weights with torch.save(model.state_dict(), path)") from None
        raise ModelError(f"{path}: not a PyTorch checkpoint ({text.splitlines()[0] if text else 'unpickling failed'})") from None
    except Exception as exc:  # noqa: BLE001 - torch.load on foreign bytes raises anything (KeyError, ...)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"{path}: not a PyTorch checkpoint ({first})") from None


def _extract_state_dict(obj: Any, path: Path) -> dict[str, torch.Tensor]:
    """The weights of an EchoNet checkpoint or a plain state dict, `module.` prefixes removed."""
    if not isinstance(obj, dict):
        raise ModelError(f"{path}: holds a {type(obj).__name__}, not a state dict or an EchoNet checkpoint dict")
    state = obj.get("state_dict", obj.get("model_state_dict", obj))
    if not isinstance(state, dict) or not state:
        raise ModelError(f"{path}: its 'state_dict' entry is not a non-empty dict")
    tensors = {k: v for k, v in state.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
    if not tensors:
        keys = ", ".join(map(str, list(obj)[:6]))
        raise ModelError(f"{path}: no weight tensors found (top-level keys: {keys})")
    if len(tensors) != len(state):
        bad = next(k for k in state if k not in tensors)
        raise ModelError(f"{path}: entry {bad!r} of the state dict is not a tensor")
    if all(k.startswith("module.") for k in tensors):  # saved from DataParallel
        tensors = {k[len("module."):]: v for k, v in tensors.items()}
    # The auxiliary head of aux_loss=True training plays no part in the output ["out"].
    return {k: v for k, v in tensors.items() if not k.startswith("aux_classifier.")}


def _arch_signature(arch: str) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        model = build_segmenter(arch)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def _guess_arch(state: dict[str, torch.Tensor]) -> str | None:
    """The supported architecture whose weight names and shapes match `state` exactly, if any."""
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    for arch in ARCHS:
        if _arch_signature(arch) == shapes:
            return arch
    return None


def _mismatch_message(model: nn.Module, state: dict[str, torch.Tensor]) -> str | None:
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key(s) e.g. {missing[0]}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s) e.g. {unexpected[0]}")
    if wrong:
        k = wrong[0]
        parts.append(f"{len(wrong)} shape mismatch(es) e.g. {k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}")
    return "; ".join(parts) or None


def load_teacher(path: str | os.PathLike, arch: str | None = None, mean: Sequence[float] | float | None = None,
                 std: Sequence[float] | float | None = None, device: str | torch.device = "cpu") -> Teacher:
    """Load a teacher from an EchoNet checkpoint or a plain state dict (always `weights_only=True`).

    `arch` defaults to the one recorded in the checkpoint (ours record it), else deeplabv3_resnet50;
    `mean`/`std` default to the recorded normalisation, else EchoNet's statistics.
    """
    path = Path(path)
    obj = _read_checkpoint(path, device)
    state = _extract_state_dict(obj, path)
    recorded = obj.get("arch") if isinstance(obj, dict) and isinstance(obj.get("arch"), str) else None
    if arch is not None and recorded is not None and arch != recorded:
        raise ModelError(f"{path}: the checkpoint records arch {recorded}, but {arch} was asked for "
                         f"(drop --teacher-arch or pass --teacher-arch {recorded})")
    arch = arch or recorded or DEFAULT_ARCH
    model = build_segmenter(arch)
    problem = _mismatch_message(model, state)
    if problem:
        guess = _guess_arch(state)
        hint = (f"it looks like a {guess} checkpoint: pass --teacher-arch {guess}" if guess else
                f"pass --teacher-arch with the architecture it was trained with ({', '.join(ARCHS)})")
        raise ModelError(f"{path}: weights do not fit a 1-channel {arch} ({problem}); {hint}")
    model.load_state_dict(state)
    if isinstance(obj, dict):
        mean = mean if mean is not None else obj.get("mean")
        std = std if std is not None else obj.get("std")
    teacher = Teacher(model, arch=arch, mean=mean, std=std)
    return teacher.to(device).eval()
