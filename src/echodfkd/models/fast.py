"""Inference engine for a trained student: the same function as `Student.step`, with fewer operations.

Exact re-arrangements of the eval-mode network (outputs equal to float tolerance):

- each ConvLSTM layer runs one convolution over concat(x, h) (no per-step weight slicing);
- the decoder has no non-linearity, so every decoder BatchNorm is folded into its convolution and the
  1x1 head into the last one (the 12->1 head turns a 24->12 3x3 conv at full size into a 24->1 one);
- a 3x3 convolution after a nearest x2 upsample equals four 2x2 convolutions at the low resolution
  (one per output phase) interleaved: 16 instead of 36 multiply-adds per low-res pixel and channel pair,
  with zero padding mapping exactly onto zero padding;
- an encoder BatchNorm whose scales are all positive commutes with the 2x2 max-pool after it, so it
  runs on a quarter of the pixels;
- channels-last memory layout (oneDNN's preferred format on CPU).

The state is the same list of (h, c) pairs as `StudentState`, so streams can move between the two.
`forward(frame, *flat_state) -> (logits, *flat_state)` is the signature exported to ONNX.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from echodfkd.models.student import Student, StudentState


def _bn_affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (scale, shift) of an eval-mode BatchNorm."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


def _subpixel_weight(weight: torch.Tensor) -> torch.Tensor:
    """(O, I, 3, 3) kernel applied after nearest x2 upsampling -> (4*O, I, 2, 2) low-res phase kernels."""
    o, i = weight.shape[:2]
    out = weight.new_zeros(2, 2, o, i, 2, 2)
    for py in range(2):
        for px in range(2):
            for ky in range(3):
                ry = (py + ky + 1) // 2 - py  # which of the two low-res rows this tap reads
                for kx in range(3):
                    rx = (px + kx + 1) // 2 - px
                    out[py, px, :, :, ry, rx] += weight[:, :, ky, kx]
    return out.reshape(4 * o, i, 2, 2)


def _subpixel_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, out_channels: int) -> torch.Tensor:
    """conv3x3(upsample_nearest_x2(x)) computed at low resolution with phase kernels, then interleaved."""
    n, _, h, w = x.shape
    y = F.conv2d(F.pad(x, (1, 1, 1, 1)), weight, bias)  # (N, 4*O, H+1, W+1)
    y = y.reshape(n, 2, 2, out_channels, h + 1, w + 1)
    phases = torch.stack([torch.stack([y[:, py, px, :, py:py + h, px:px + w] for px in range(2)], -1)
                          for py in range(2)], -3)  # (N, O, H, 2, W, 2)
    return phases.reshape(n, out_channels, 2 * h, 2 * w)


class StreamingStudent(nn.Module):
    """A frozen, re-arranged copy of an eval-mode `Student` for fast frame-by-frame inference."""

    def __init__(self, student: Student, channels_last: bool = True, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        s = student
        self.blocks, self.layers, self.skip, self.residual = s.blocks, s.layers, s.skip, s.residual
        self.widths, self.out_channels = list(s.widths), int(s.config.get("out_channels", 1))
        self.channels_last, self.dtype = channels_last, dtype
        self.input_mean, self.input_std = float(s.input_mean), float(s.input_std)
        fmt = torch.channels_last if channels_last else torch.contiguous_format

        def buf(t: torch.Tensor) -> torch.Tensor:
            t = t.detach().clone().to(dtype)
            return t.contiguous(memory_format=fmt) if t.dim() == 4 else t.contiguous()

        # Encoder: fused gate convolutions and BN as (scale, shift) broadcast tensors.
        self.enc_w, self.enc_b = nn.ParameterList(), nn.ParameterList()
        self.bn_scale, self.bn_shift = nn.ParameterList(), nn.ParameterList()
        self.pool_first: list[bool] = []
        for b in range(s.blocks):
            for j in range(s.layers):
                cell = s.cells[b][j]
                self.enc_w.append(nn.Parameter(buf(cell.conv.weight), requires_grad=False))
                self.enc_b.append(nn.Parameter(buf(cell.conv.bias), requires_grad=False))
                sc, sh = _bn_affine(s.norms[b][j])
                self.bn_scale.append(nn.Parameter(buf(sc.reshape(1, -1, 1, 1)), requires_grad=False))
                self.bn_shift.append(nn.Parameter(buf(sh.reshape(1, -1, 1, 1)), requires_grad=False))
            last_bn_positive = bool((_bn_affine(s.norms[b][-1])[0] > 0).all())
            # Pool before BN only where nothing else reads the full-size normalised features.
            self.pool_first.append(b < s.blocks - 1 and not s.skip and not s.residual and last_bn_positive)
        self.shortcuts = s.shortcuts if s.residual else nn.ModuleList()
        # Decoder: BN folded into each conv, the head folded into the last one.
        self.dec_w, self.dec_b, self.dec_out = nn.ParameterList(), nn.ParameterList(), []
        n_dec = s.blocks - 1
        for k in range(n_dec):
            conv = s.up_convs[k]
            sc, sh = _bn_affine(s.up_norms[k])
            w = conv.weight * sc.reshape(-1, 1, 1, 1)
            bias = conv.bias * sc + sh
            if k == n_dec - 1:
                hw = s.head.weight[:, :, 0, 0]
                w = torch.einsum("oc,cikl->oikl", hw, w)
                bias = hw @ bias + s.head.bias
            self.dec_out.append(w.shape[0])
            if not s.skip:
                w = _subpixel_weight(w)
                bias = bias.repeat(4)
            self.dec_w.append(nn.Parameter(buf(w), requires_grad=False))
            self.dec_b.append(nn.Parameter(buf(bias), requires_grad=False))
        if n_dec == 0:
            self.head_w = nn.Parameter(buf(s.head.weight), requires_grad=False)
            self.head_b = nn.Parameter(buf(s.head.bias), requires_grad=False)
        self.eval()

    # ------------------------------------------------------------------ state
    def init_state(self, batch: int, height: int, width: int, device: torch.device | str | None = None) -> StudentState:
        """Zero state for `batch` streams of (height, width) frames, in this engine's dtype and layout."""
        k = 2 ** (self.blocks - 1)
        if height % k or width % k:
            raise ValueError(f"frame size {height}x{width} must be divisible by {k} for a {self.blocks}-block student")
        device = device or self.enc_w[0].device
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        cells = []
        for b, wb in enumerate(self.widths):
            for _ in range(self.layers):
                z = torch.zeros(batch, wb, height // 2 ** b, width // 2 ** b, device=device, dtype=self.dtype)
                z = z.contiguous(memory_format=fmt)
                cells.append((z, z))
        return StudentState(cells)

    # ------------------------------------------------------------------ compute
    def _cell(self, k: int, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Same maths as ConvLSTMCell.update, in place on the fresh gate tensor (inference only: fewer allocations).
        hidden = h.shape[1]
        gates = F.conv2d(torch.cat([x, h], 1), self.enc_w[k], self.enc_b[k], padding=1)
        ifo = gates[:, :3 * hidden].sigmoid_()
        g = gates[:, 3 * hidden:].tanh_()
        c = torch.mul(ifo[:, hidden:2 * hidden], c).addcmul_(ifo[:, :hidden], g)
        return torch.tanh(c).mul_(ifo[:, 2 * hidden:]), c

    def _bn(self, k: int, y: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.bn_shift[k], y, self.bn_scale[k])

    def forward(self, frame: torch.Tensor, *state: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """One frame batch (N, 1, H, W) on the 0-255 scale plus the flat state -> (logits, *new flat state)."""
        y = (frame.to(self.dtype) - self.input_mean) / self.input_std
        if self.channels_last:
            y = y.contiguous(memory_format=torch.channels_last)
        new_state: list[torch.Tensor] = []
        feats: list[torch.Tensor] = []
        k = 0
        for b in range(self.blocks):
            block_in = y
            for j in range(self.layers):
                h, c = self._cell(k, y, state[2 * k], state[2 * k + 1])
                new_state += [h, c]
                defer_bn = self.pool_first[b] and j == self.layers - 1
                y = h if defer_bn else self._bn(k, h)
                k += 1
            if self.residual:
                y = y + self.shortcuts[b](block_in)
            feats.append(y)
            if b < self.blocks - 1:
                y = F.max_pool2d(y, 2)
                if self.pool_first[b]:
                    y = self._bn(k - 1, y)
        y = feats[-1]
        for j, b in enumerate(range(self.blocks - 2, -1, -1)):
            if self.skip:
                y = F.interpolate(y, scale_factor=2.0, mode="nearest")
                y = F.conv2d(torch.cat([y, feats[b]], 1), self.dec_w[j], self.dec_b[j], padding=1)
            else:
                y = _subpixel_conv(y, self.dec_w[j], self.dec_b[j], self.dec_out[j])
                if self.channels_last:
                    y = y.contiguous(memory_format=torch.channels_last)
        if self.blocks == 1:
            y = F.conv2d(y, self.head_w, self.head_b)
        return (y, *new_state)

    @torch.no_grad()
    def step(self, frame: torch.Tensor, state: StudentState | None = None) -> tuple[torch.Tensor, StudentState]:
        """Same contract as `Student.step`: logits (N, C, H, W) and the new state."""
        if state is None:
            state = self.init_state(frame.shape[0], frame.shape[2], frame.shape[3], frame.device)
        out = self.forward(frame, *state.flat())
        return out[0], StudentState.from_flat(list(out[1:]))
