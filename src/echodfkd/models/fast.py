"""Inference engine for a trained student: the same function as `Student.step`, with fewer operations.

Exact re-arrangements of the eval-mode network (outputs equal to float tolerance):

- each ConvLSTM layer runs one convolution over concat(x, h) (no per-step weight slicing); its gate maths
  runs in place in eager mode and out-of-place under a compiler, which then fuses it into one loop;
- hidden widths can be padded with zero channels to a multiple of `pad_channels` (16 fills one AVX-512 /
  AMX register row): padded gates get zero weights and bias, so their c and h stay exactly 0 and every
  real channel is unchanged;
- the decoder has no non-linearity, so every decoder BatchNorm is folded into its convolution and the
  1x1 head into the last one (the 12->1 head turns a 24->12 3x3 conv at full size into a 24->1 one);
- a 3x3 convolution after a nearest x2 upsample equals a stride-2, 4x4 transposed convolution at the low
  resolution (16 instead of 36 multiply-adds per low-res pixel and channel pair), with zero padding
  mapping exactly onto zero padding; that in turn equals a 3x3 convolution at the low resolution with 4x
  the output channels (one per output phase, unused taps zero) followed by pixel_shuffle(2)
  (`subpixel_decoder=True`, off by default): more multiply-adds for a plain convolution with 4-192 outputs
  instead of a transposed one with 1-48. On one busy thread it saved 2-4.5 % of CPU per frame, but in quiet
  2-thread runs of the compiled engine it was much slower (demo student, 5 rounds: mixed 1,164 vs 1,649 fps
  at 56 px, 412 vs 667 at 112 px), so one-stream engines keep the transposed form; compiled engines for
  several streams use the sub-pixel one (`echodfkd.models.compiled.BATCHED_SUBPIXEL`: at 16 rows a call the
  network ran 1,869-1,892 frames/s against 1,744-1,748 transposed, two A/B pairs of quiet runs);
- an encoder BatchNorm whose scales are all positive commutes with the 2x2 max-pool after it, so it
  runs on a quarter of the pixels;
- channels-last memory layout (oneDNN's preferred format on CPU).

Precisions (`PRECISIONS`, built by `for_precision`): "fp32"; "bf16" (weights, activations and the recurrent
state all bfloat16); "mixed": bfloat16 convolutions (each bf16 conv's input is cast to bf16 and its output
back to fp32, where its bias is added), except the part of the first ConvLSTM layer's convolution that reads
the raw frame (1 of its 13 input channels at filters 12), which runs in fp32; gate activations, the cell state
c, h, BatchNorm and the logits stay fp32. The frame is what bf16 rounding hurts: on the demo student at 112 px
the worst-clip mask Dice vs fp32 over 5 real clips was 0.9938 with every conv in bf16 and 0.9976 with the whole
first layer in fp32 (all-bf16: 0.9877). Splitting that layer (frame part fp32, h part bf16) kept the worst of
those 5 clips at 0.9982 (whole layer fp32 in the same run: 0.9984) and cut the compiled engine's CPU time per
frame at 112 px by 8 % (3.24 -> 2.97 ms, one thread; at 56 px 0.865 -> 0.877 ms, within noise). In fp32,
the first layer's 17.6 M multiply-adds per 56-px frame took 278 us in a kernel profile (one thread, busy
machine), the other three layers' 73 M in bf16 364 us.

With `pad_channels=1` the state is the same list of (h, c) pairs as `StudentState`, so streams can move
between the two; `to_student_state` / `from_student_state` convert a padded state.
`forward(frame, *flat_state) -> (logits, *flat_state)` is the signature exported to ONNX.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from echodfkd.models.student import Student, StudentState, check_frame_size

# Which 3x3 taps of a conv after a nearest x2 upsample land on each index of the 4-tap transposed kernel.
_TAPS = ((2,), (1, 2), (0, 1), (0,))


def _bn_affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel (scale, shift) of an eval-mode BatchNorm."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


def upsample_conv_as_transposed(weight: torch.Tensor) -> torch.Tensor:
    """(O, I, 3, 3) kernel applied after nearest x2 upsampling -> (I, O, 4, 4) stride-2 transposed kernel."""
    o, i = weight.shape[:2]
    out = weight.new_zeros(i, o, 4, 4)
    for ty, kys in enumerate(_TAPS):
        for tx, kxs in enumerate(_TAPS):
            for ky in kys:
                for kx in kxs:
                    out[:, :, ty, tx] += weight[:, :, ky, kx].T
    return out


#: Sub-pixel form of a stride-2, pad-1, 4-tap transposed conv: output phase -> ((3x3 tap, 4-tap index), ...).
_PHASE_TAPS = {0: ((0, 3), (1, 1)), 1: ((1, 2), (2, 0))}


def transposed_as_subpixel(weight: torch.Tensor) -> torch.Tensor:
    """(I, O, 4, 4) stride-2 transposed kernel -> (4 O, I, 3, 3) kernel whose conv, then pixel_shuffle(2), equals it."""
    i, o = weight.shape[:2]
    out = weight.new_zeros(o, 2, 2, i, 3, 3)
    for py, ys in _PHASE_TAPS.items():
        for px, xs in _PHASE_TAPS.items():
            for ty, ky in ys:
                for tx, kx in xs:
                    out[:, py, px, :, ty, tx] = weight[:, :, ky, kx].T
    return out.reshape(4 * o, i, 3, 3)


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def _scatter(t: torch.Tensor, dim: int, index: torch.Tensor, size: int) -> torch.Tensor:
    """Place the slices of `t` along `dim` at positions `index` of a zero tensor of length `size`."""
    shape = list(t.shape)
    shape[dim] = size
    out = t.new_zeros(shape)
    return out.index_copy_(dim, index, t)


#: Engine precision name -> StreamingStudent keyword arguments (dtype, conv_dtype, full_precision_layers/inputs).
PRECISIONS: dict[str, dict[str, Any]] = {
    "fp32": dict(dtype=torch.float32),
    "bf16": dict(dtype=torch.bfloat16),
    "mixed": dict(dtype=torch.float32, conv_dtype=torch.bfloat16, full_precision_inputs=1),
}


def for_precision(student: Student, precision: str, **kwargs) -> "StreamingStudent":
    """The streaming engine of `student` at a named precision (one of `PRECISIONS`)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {tuple(PRECISIONS)}, got {precision!r}")
    return StreamingStudent(student, **PRECISIONS[precision], **kwargs)


class StreamingStudent(nn.Module):
    """A frozen, re-arranged copy of an eval-mode `Student` for fast frame-by-frame inference.

    `dtype` is the state's and activations' dtype; `conv_dtype` (default: `dtype`) the convolutions' one,
    except for the first `full_precision_layers` ConvLSTM layers, whose convolutions run in `dtype`, and
    the next layers up to the `full_precision_inputs`-th, whose convolution is split in two: the part
    over the layer's input (x) runs in `dtype` and carries the bias, the part over its h in `conv_dtype`.
    """

    def __init__(self, student: Student, channels_last: bool = True, dtype: torch.dtype = torch.float32,
                 pad_channels: int = 1, conv_dtype: torch.dtype | None = None,
                 full_precision_layers: int = 0, full_precision_inputs: int = 0,
                 subpixel_decoder: bool = False) -> None:
        super().__init__()
        s = student
        if pad_channels < 1:
            raise ValueError(f"pad_channels must be >= 1, got {pad_channels}")
        self.conv_dtype = conv_dtype or dtype
        #: Mixed: convolutions in conv_dtype, their biases added afterwards in dtype (fp32).
        self.mixed = self.conv_dtype != dtype
        cdt = self.conv_dtype
        self.blocks, self.layers, self.skip, self.residual = s.blocks, s.layers, s.skip, s.residual
        self.widths, self.out_channels = list(s.widths), int(s.config.get("out_channels", 1))
        self.subpixel = subpixel_decoder and not s.skip
        self.padded = [_round_up(w, pad_channels) for w in self.widths]
        self.channels_last, self.dtype = channels_last, dtype
        self.input_mean, self.input_std = float(s.input_mean), float(s.input_std)
        fmt = torch.channels_last if channels_last else torch.contiguous_format

        def buf(t: torch.Tensor, dt: torch.dtype = dtype) -> nn.Parameter:
            t = t.detach().clone().to(dt)
            t = t.contiguous(memory_format=fmt) if t.dim() == 4 else t.contiguous()
            return nn.Parameter(t, requires_grad=False)

        def pos(b: int) -> torch.Tensor:
            """Positions of block b's real channels inside its padded width."""
            return torch.arange(self.widths[b])

        def gate_pos(b: int) -> torch.Tensor:
            w, p = self.widths[b], self.padded[b]
            return torch.cat([q * p + torch.arange(w) for q in range(4)])

        # Encoder: fused gate convolutions and BN as (scale, shift) broadcast tensors.
        self.enc_w, self.enc_b, self.enc_wx = nn.ParameterList(), nn.ParameterList(), nn.ParameterList()
        self.bn_scale, self.bn_shift = nn.ParameterList(), nn.ParameterList()
        self.short_w, self.short_b = nn.ParameterList(), nn.ParameterList()
        self.pool_first: list[bool] = []
        self.split_layers: list[int] = []  # layers whose input part runs in `dtype`, their h part in conv_dtype
        in_pad = int(s.config.get("in_channels", 1))
        in_pos = torch.arange(in_pad)
        for b in range(s.blocks):
            block_in_pad, block_in_pos = in_pad, in_pos
            for j in range(s.layers):
                cell = s.cells[b][j]
                w = cell.conv.weight  # (4w, in + w, 3, 3)
                cols = torch.cat([in_pos, in_pad + pos(b)])
                w = _scatter(_scatter(w, 1, cols, in_pad + self.padded[b]), 0, gate_pos(b), 4 * self.padded[b])
                k = len(self.enc_w)
                if full_precision_layers <= k < full_precision_inputs:  # split: x part in dtype, h part in cdt
                    self.split_layers.append(k)
                    self.enc_wx.append(buf(w[:, :in_pad]))
                    w = w[:, in_pad:]
                self.enc_w.append(buf(w, dtype if k < full_precision_layers else cdt))
                self.enc_b.append(buf(_scatter(cell.conv.bias, 0, gate_pos(b), 4 * self.padded[b])))
                sc, sh = (_scatter(t, 0, pos(b), self.padded[b]) for t in _bn_affine(s.norms[b][j]))
                self.bn_scale.append(buf(sc.reshape(1, -1, 1, 1)))
                self.bn_shift.append(buf(sh.reshape(1, -1, 1, 1)))
                in_pad, in_pos = self.padded[b], pos(b)
            if s.residual:
                sc_mod = s.shortcuts[b]
                if isinstance(sc_mod, nn.Conv2d):
                    wt = _scatter(_scatter(sc_mod.weight, 1, block_in_pos, block_in_pad), 0, pos(b), self.padded[b])
                    bias = _scatter(sc_mod.bias, 0, pos(b), self.padded[b])
                else:  # identity between equal widths: a 1x1 identity kernel keeps one code path
                    wt = _scatter(torch.eye(self.widths[b])[:, :, None, None], 1, block_in_pos, block_in_pad)
                    wt = _scatter(wt, 0, pos(b), self.padded[b])
                    bias = torch.zeros(self.padded[b])
                self.short_w.append(buf(wt, cdt))
                self.short_b.append(buf(bias))
            last_bn_positive = bool((_bn_affine(s.norms[b][-1])[0] > 0).all())
            # Pool before BN only where nothing else reads the full-size normalised features.
            self.pool_first.append(b < s.blocks - 1 and not s.skip and not s.residual and last_bn_positive)
        # Decoder: BN folded into each conv, the head folded into the last one.
        self.dec_w, self.dec_b = nn.ParameterList(), nn.ParameterList()
        n_dec = s.blocks - 1
        for k in range(n_dec):
            b = s.blocks - 2 - k  # the decoder conv k produces block b's resolution
            conv = s.up_convs[k]
            sc, sh = _bn_affine(s.up_norms[k])
            w = conv.weight * sc.reshape(-1, 1, 1, 1)
            bias = conv.bias * sc + sh
            out_pos, out_size = pos(b), self.padded[b]
            if k == n_dec - 1:
                hw = s.head.weight[:, :, 0, 0]
                w = torch.einsum("oc,cikl->oikl", hw, w)
                bias = hw @ bias + s.head.bias
                out_pos, out_size = torch.arange(w.shape[0]), w.shape[0]
            cols = pos(b + 1)
            if s.skip:
                cols = torch.cat([cols, self.padded[b + 1] + pos(b)])
            w = _scatter(_scatter(w, 1, cols, self.padded[b + 1] + (self.padded[b] if s.skip else 0)),
                         0, out_pos, out_size)
            bias = _scatter(bias, 0, out_pos, out_size)
            if not s.skip:
                w = upsample_conv_as_transposed(w)
                if self.subpixel:  # one 3x3 conv with 4x the outputs, then pixel_shuffle
                    w, bias = transposed_as_subpixel(w), bias.repeat_interleave(4)
            self.dec_w.append(buf(w, cdt))
            self.dec_b.append(buf(bias, cdt))  # no state after the decoder: its biases stay in the conv
        if n_dec == 0:
            self.head_w = buf(_scatter(s.head.weight, 1, pos(0), self.padded[0]), cdt)
            self.head_b = buf(s.head.bias, cdt)
        self.eval()

    # ------------------------------------------------------------------ state
    def init_state(self, batch: int, height: int, width: int, device: torch.device | str | None = None) -> StudentState:
        """Zero state for `batch` streams of (height, width) frames, in this engine's dtype, layout and padding."""
        for side in (height, width):
            check_frame_size(side, self.blocks)
        device = device or self.enc_w[0].device
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        cells = []
        for b, wb in enumerate(self.padded):
            for _ in range(self.layers):
                z = torch.zeros(batch, wb, height // 2 ** b, width // 2 ** b, device=device, dtype=self.dtype)
                z = z.contiguous(memory_format=fmt)
                cells.append((z, z.clone()))  # distinct tensors: export would merge aliased inputs
        return StudentState(cells)

    def to_student_state(self, state: StudentState) -> StudentState:
        """This engine's (padded) state -> the reference `Student`'s state (real channels, float32)."""
        cells = []
        for k, (h, c) in enumerate(state.cells):
            w = self.widths[k // self.layers]
            cells.append((h[:, :w].float().contiguous(), c[:, :w].float().contiguous()))
        return StudentState(cells)

    def from_student_state(self, state: StudentState) -> StudentState:
        """The reference `Student`'s state -> this engine's dtype, layout and padding."""
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        cells = []
        for k, (h, c) in enumerate(state.cells):
            p = self.padded[k // self.layers]
            h, c = (F.pad(t, (0, 0, 0, 0, 0, p - t.shape[1])).to(self.dtype).contiguous(memory_format=fmt)
                    for t in (h, c))
            cells.append((h, c))
        return StudentState(cells)

    # ------------------------------------------------------------------ compute
    def _conv_in(self, t: torch.Tensor) -> torch.Tensor:
        """A convolution's input in the convolution dtype (a no-op unless mixed)."""
        return t.to(self.conv_dtype) if self.mixed else t

    @staticmethod
    def _conv_bias(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, **kw) -> torch.Tensor:
        """conv2d + bias in the weight's dtype; a bias of another dtype (mixed) is added after casting back."""
        if weight.dtype == bias.dtype:
            return F.conv2d(x if x.dtype == weight.dtype else x.to(weight.dtype), weight, bias, **kw)
        return F.conv2d(x.to(weight.dtype), weight, None, **kw).to(bias.dtype) + bias.view(1, -1, 1, 1)

    def _cell(self, k: int, x: torch.Tensor, h: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Same maths as ConvLSTMCell.update.
        n = h.shape[1]
        if k in self.split_layers:  # the input part in full precision, carrying the bias
            wx = self.enc_wx[self.split_layers.index(k)]
            gh = F.conv2d(h.to(self.conv_dtype), self.enc_w[k], None, padding=1).to(x.dtype)
            gates = F.conv2d(x, wx, self.enc_b[k], padding=1) + gh
        else:
            gates = self._conv_bias(torch.cat([x, h], 1), self.enc_w[k], self.enc_b[k], padding=1)
        if torch.compiler.is_compiling() or torch.compiler.is_exporting():
            # Out-of-place: the compiler fuses the whole update into one loop (in-place ops on channel
            # slices became masked select-both-branches loops, 3x slower).
            i, f, o = (torch.sigmoid(gates[:, q * n:(q + 1) * n]) for q in range(3))
            c = f * c + i * torch.tanh(gates[:, 3 * n:])
            return o * torch.tanh(c), c
        # Eager: in place on the fresh gate tensor (fewer allocations; ~10 % faster per frame).
        ifo = gates[:, :3 * n].sigmoid_()
        g = gates[:, 3 * n:].tanh_()
        c = torch.mul(ifo[:, n:2 * n], c).addcmul_(ifo[:, :n], g)
        return torch.tanh(c).mul_(ifo[:, 2 * n:]), c

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
                if self.channels_last:  # the compiler may pick other output strides; the state is fed back as is
                    h, c = (t.contiguous(memory_format=torch.channels_last) for t in (h, c))
                new_state += [h, c]
                defer_bn = self.pool_first[b] and j == self.layers - 1
                y = h if defer_bn else self._bn(k, h)
                k += 1
            if self.residual:
                y = y + self._conv_bias(block_in, self.short_w[b], self.short_b[b])
            feats.append(y)
            if b < self.blocks - 1:
                y = F.max_pool2d(y, 2)
                if self.pool_first[b]:
                    y = self._bn(k - 1, y)
        y = self._conv_in(feats[-1])
        for j, b in enumerate(range(self.blocks - 2, -1, -1)):
            if self.skip:
                y = F.interpolate(y, scale_factor=2.0, mode="nearest")
                y = F.conv2d(torch.cat([y, self._conv_in(feats[b])], 1), self.dec_w[j], self.dec_b[j], padding=1)
            elif self.subpixel:
                y = F.pixel_shuffle(F.conv2d(y, self.dec_w[j], self.dec_b[j], padding=1), 2)
                if self.channels_last:
                    y = y.contiguous(memory_format=torch.channels_last)
            else:
                y = F.conv_transpose2d(y, self.dec_w[j], self.dec_b[j], stride=2, padding=1)
        if self.blocks == 1:
            y = F.conv2d(y, self.head_w, self.head_b)
        if self.mixed:
            y = y.to(self.dtype)
        return (y, *new_state)

    @torch.no_grad()
    def step(self, frame: torch.Tensor, state: StudentState | None = None) -> tuple[torch.Tensor, StudentState]:
        """Same contract as `Student.step`: logits (N, C, H, W) and the new state (this engine's padding)."""
        if state is None:
            state = self.init_state(frame.shape[0], frame.shape[2], frame.shape[3], frame.device)
        out = self.forward(frame, *state.flat())
        return out[0], StudentState.from_flat(list(out[1:]))
