"""The EchoDFKD student: a (B, l) ConvLSTM encoder-decoder that can stream frame by frame."""

from __future__ import annotations

import numbers
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from echodfkd.errors import ModelError
from echodfkd.io.records import StudentConfig
from echodfkd.models.convlstm import ConvLSTMCell, LSTMState

# Fixed input normalisation (EchoNet-Dynamic grayscale statistics on the 0-255 scale); not learned.
INPUT_MEAN = 32.7
INPUT_STD = 50.7
CONFIG_NAME = StudentConfig.FILE  # "config.json": the name lives with the record
WEIGHTS_NAME = "model.safetensors"


def check_frame_size(size: int, blocks: int, what: str = "frame size",
                     error: type[Exception] = ValueError) -> int:
    """`size` if a `blocks`-block student can run at it (>= 1 and divisible by 2^(blocks-1)), else `error`.

    The one place of this rule; `what` names the size in the message (a flag, "export size", ...).
    """
    k = 2 ** (int(blocks) - 1)
    if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1 or size % k:
        raise error(f"{what} {size} must be a positive multiple of {k} for a {blocks}-block student")
    return int(size)


class _MaxPool2x2(torch.autograd.Function):
    """F.max_pool2d(x, 2) as four strided maxima; the gradient goes to the first maximum of each window in
    row-major order, as max_pool2d's does. Its CPU kernel is slow on NCHW input (~8x here at 56x56)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        m = torch.maximum(torch.maximum(x[:, :, 0::2, 0::2], x[:, :, 0::2, 1::2]),
                          torch.maximum(x[:, :, 1::2, 0::2], x[:, :, 1::2, 1::2]))
        ctx.save_for_backward(x, m)
        return m

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        x, m = ctx.saved_tensors
        first = x[:, :, 0::2, 0::2] == m
        second = x[:, :, 0::2, 1::2] == m
        down = ~(first | second)  # the maximum is in the window's second row
        right = ~first & (second | (x[:, :, 1::2, 0::2] != m))
        h, w = x.shape[2:]
        rows = torch.arange(0, h, 2, device=x.device).view(-1, 1) * w
        corner = rows + torch.arange(0, w, 2, device=x.device)  # flat index of each window's top-left
        index = down.long().mul_(w).add_(right).add_(corner)  # in place: few clip-sized int64 temporaries
        return torch.ops.aten.max_pool2d_with_indices_backward(grad, x, [2, 2], [2, 2], [0, 0], [1, 1], False,
                                                               index)


def max_pool2x2(x: torch.Tensor) -> torch.Tensor:
    """2x2 max pooling of (M, C, H, W) (F.max_pool2d(x, 2)'s values and gradient), fast in training on NCHW."""
    if x.requires_grad and x.is_contiguous() and x.shape[2] % 2 == 0 and x.shape[3] % 2 == 0:
        return _MaxPool2x2.apply(x)
    return F.max_pool2d(x, 2)


@dataclass
class StudentState:
    """Recurrent state of every ConvLSTM layer, in encoder order; one object per stream."""

    cells: list[LSTMState]

    def detach(self) -> "StudentState":
        """A copy cut from the autograd graph (for truncated back-propagation)."""
        return StudentState([(h.detach(), c.detach()) for h, c in self.cells])

    def flat(self) -> list[torch.Tensor]:
        """The state as a flat list [h0, c0, h1, c1, ...] (for ONNX export)."""
        return [t for hc in self.cells for t in hc]

    @classmethod
    def from_flat(cls, tensors: list[torch.Tensor]) -> "StudentState":
        """Inverse of `flat`."""
        return cls([(tensors[i], tensors[i + 1]) for i in range(0, len(tensors), 2)])


class Student(nn.Module):
    """Reference (B, l) ConvLSTM segmenter of EchoDFKD; skip/residual are opt-in variants."""

    def __init__(self, blocks: int = 4, layers: int = 1, filters: int = 12, skip: bool = False,
                 residual: bool = False, out_channels: int = 1, in_channels: int = 1,
                 input_mean: float = INPUT_MEAN, input_std: float = INPUT_STD) -> None:
        super().__init__()
        if blocks < 1 or layers < 1 or filters < 1 or out_channels < 1:
            raise ValueError("blocks, layers, filters and out_channels must all be >= 1")
        self.config: dict[str, Any] = dict(
            architecture="echodfkd-student", blocks=blocks, layers=layers, filters=filters, skip=skip,
            residual=residual, out_channels=out_channels, in_channels=in_channels,
            input_mean=input_mean, input_std=input_std)
        self.blocks, self.layers, self.skip, self.residual = blocks, layers, skip, residual
        self.register_buffer("input_mean", torch.tensor(float(input_mean)), persistent=False)
        self.register_buffer("input_std", torch.tensor(float(input_std)), persistent=False)
        widths = [filters * 2 ** b for b in range(blocks)]
        self.widths = widths
        self.cells = nn.ModuleList()
        self.norms = nn.ModuleList()
        self.shortcuts = nn.ModuleList()
        prev = in_channels
        for width in widths:
            self.cells.append(nn.ModuleList(
                ConvLSTMCell(prev if j == 0 else width, width) for j in range(layers)))
            self.norms.append(nn.ModuleList(nn.BatchNorm2d(width) for _ in range(layers)))
            if residual:
                self.shortcuts.append(nn.Identity() if prev == width else nn.Conv2d(prev, width, 1))
            prev = width
        self.up_convs = nn.ModuleList()
        self.up_norms = nn.ModuleList()
        for b in range(blocks - 2, -1, -1):
            in_ch = widths[b + 1] + (widths[b] if skip else 0)
            self.up_convs.append(nn.Conv2d(in_ch, widths[b], 3, padding=1))
            self.up_norms.append(nn.BatchNorm2d(widths[b]))
        self.head = nn.Conv2d(filters, out_channels, 1)

    # ----------------------------------------------------------------- shared pieces
    def _normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.input_mean) / self.input_std

    def _check_size(self, h: int, w: int) -> None:
        for side in (h, w):
            check_frame_size(side, self.blocks)

    def _decode(self, feats: list[torch.Tensor]) -> torch.Tensor:
        """Decoder + head on per-frame tensors (M, C, H, W); feats[b] is block b's output."""
        y = feats[-1]
        for k, b in enumerate(range(self.blocks - 2, -1, -1)):
            y = F.interpolate(y, scale_factor=2.0, mode="nearest")
            if self.skip:
                y = torch.cat([y, feats[b]], dim=1)
            y = self.up_norms[k](self.up_convs[k](y))
        return self.head(y)

    # ----------------------------------------------------------------- whole clip
    def forward(self, x: torch.Tensor, state: StudentState | None = None,
                return_state: bool = False) -> torch.Tensor | tuple[torch.Tensor, StudentState]:
        """Logits (N, T, C, H, W) for grayscale frames (N, T, 1, H, W) on the 0-255 scale."""
        if x.dim() != 5:
            raise ValueError(f"expected input (N, T, C, H, W), got shape {tuple(x.shape)}")
        n, t, _, h, w = x.shape
        self._check_size(h, w)
        y = self._normalise(x)
        feats, new_cells, k = [], [], 0
        for b in range(self.blocks):
            block_in = y
            for j in range(self.layers):
                seq, last = self.cells[b][j].forward_sequence(y, None if state is None else state.cells[k])
                new_cells.append(last)
                k += 1
                ch, hh, ww = seq.shape[2:]
                y = self.norms[b][j](seq.reshape(n * t, ch, hh, ww)).reshape(n, t, ch, hh, ww)
            if self.residual:
                ci, hh, ww = block_in.shape[2:]
                y = y + self.shortcuts[b](block_in.reshape(n * t, ci, hh, ww)).reshape(y.shape)
            feats.append(y.reshape(n * t, *y.shape[2:]))
            if b < self.blocks - 1:
                pooled = max_pool2x2(feats[-1])
                y = pooled.reshape(n, t, *pooled.shape[1:])
        logits = self._decode(feats)
        logits = logits.reshape(n, t, *logits.shape[1:])
        return (logits, StudentState(new_cells)) if return_state else logits

    # ----------------------------------------------------------------- streaming
    def init_state(self, batch: int, height: int, width: int, device: torch.device | str | None = None,
                   dtype: torch.dtype | None = None) -> StudentState:
        """Zero state for `batch` streams of frames of size (height, width)."""
        self._check_size(height, width)
        ref = next(self.parameters())
        device = device or ref.device
        dtype = dtype or ref.dtype
        cells = []
        for b, width_b in enumerate(self.widths):
            hb, wb = height // 2 ** b, width // 2 ** b
            for _ in range(self.layers):
                z = torch.zeros(batch, width_b, hb, wb, device=device, dtype=dtype)
                cells.append((z, z.clone()))  # distinct tensors: export would merge aliased inputs
        return StudentState(cells)

    def step(self, frame: torch.Tensor, state: StudentState | None = None) -> tuple[torch.Tensor, StudentState]:
        """Process one frame batch (N, 1, H, W) with no look-ahead; returns logits (N, C, H, W) and the new state."""
        if frame.dim() != 4:
            raise ValueError(f"expected a frame batch (N, C, H, W), got shape {tuple(frame.shape)}")
        if state is None:
            state = self.init_state(frame.shape[0], frame.shape[2], frame.shape[3], frame.device, frame.dtype)
        y = self._normalise(frame)
        feats, new_cells, k = [], [], 0
        for b in range(self.blocks):
            block_in = y
            for j in range(self.layers):
                hc = self.cells[b][j](y, state.cells[k])
                new_cells.append(hc)
                k += 1
                y = self.norms[b][j](hc[0])
            if self.residual:
                y = y + self.shortcuts[b](block_in)
            feats.append(y)
            if b < self.blocks - 1:
                y = F.max_pool2d(y, 2)
        return self._decode(feats), StudentState(new_cells)

    # ----------------------------------------------------------------- training layout
    def use_channels_last(self) -> int:
        """Channels-last weights for the decoder and every ConvLSTM after the first block; returns how many modules.

        Their convolutions then run channels-last (oneDNN's faster layout, forward and backward) and so do
        batch norm, pooling and upsampling between them. The first block stays NCHW: its 12-channel gate
        slices of a channels-last tensor would make the gate arithmetic strided. Same values, same state_dict.
        """
        parts = [*self.cells[1:], *self.shortcuts[1:], *self.up_convs, self.head]
        for part in parts:
            part.to(memory_format=torch.channels_last)
        return len(parts)

    # ----------------------------------------------------------------- persistence
    def num_parameters(self) -> int:
        """Number of trainable parameters."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)

    def save_pretrained(self, directory: str | os.PathLike, extra_config: dict[str, Any] | None = None) -> Path:
        """Write `config.json` and `model.safetensors` into `directory` (atomically)."""
        from safetensors.torch import save_file

        from echodfkd.io.atomic import atomic_path
        from echodfkd.io.records import file_sha256

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        config = dict(self.config, params=self.num_parameters())
        config.update(extra_config or {})
        record = StudentConfig.parse(config, directory / CONFIG_NAME)  # refuse a wrong type before writing
        tensors = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        with atomic_path(directory / WEIGHTS_NAME) as tmp:
            save_file(tensors, str(tmp), metadata={"format": "pt"})
        record.weights_sha256 = file_sha256(directory / WEIGHTS_NAME)
        record.write(directory / CONFIG_NAME)
        self.config, self.record = record.to_dict(), record
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, map_location: str | torch.device = "cpu") -> "Student":
        """Load a student saved by `save_pretrained` (or a distillation run directory)."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        directory = Path(directory)
        cfg_path, w_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
        for p in (cfg_path, w_path):
            if not p.is_file():
                raise ModelError(f"{p}: missing (a student directory holds {CONFIG_NAME} and {WEIGHTS_NAME})")
        record = StudentConfig.read(cfg_path)  # one-line error naming the field of a wrong type
        record.require_model(cfg_path)
        model = cls(**record.arch_kwargs())
        try:
            state = load_file(str(w_path), device=str(map_location))
        except (SafetensorError, OSError) as exc:
            raise ModelError(f"{w_path}: not a readable safetensors file ({exc})") from None
        missing, unexpected = set(model.state_dict()) - set(state), set(state) - set(model.state_dict())
        if missing or unexpected:
            raise ModelError(f"{w_path}: weights do not match the config "
                             f"(missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]})")
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise ModelError(f"{w_path}: weight shapes do not match the config ({str(exc).splitlines()[-1].strip()})") from None
        model.config, model.record = record.to_dict(), record
        return model.eval()
