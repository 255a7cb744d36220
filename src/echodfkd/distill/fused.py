"""The ConvLSTM gate update as one autograd function, for training on CPUs.

Autograd of the plain update (`ConvLSTMCell.update`) slices the gate tensor five times; each slice's
backward allocates a zero tensor of the full gate size and copies into it, then adds the pieces up. Here
the backward writes the four gate gradients once, with one concatenation: the same arithmetic and the
same values in fp32 (to float rounding), less memory traffic. Under bf16 autocast h is kept in bf16 (c in
fp32). Only training uses it; streaming keeps the plain update (no autograd there).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from echodfkd.models.convlstm import ConvLSTMCell, LSTMState


class _GateUpdate(torch.autograd.Function):
    """(gates i,f,o,g pre-activations, c) -> (h, c'): c' = f*c + i*g, h = o*tanh(c')."""

    @staticmethod
    def forward(ctx: Any, gates: torch.Tensor, c: torch.Tensor, h_dtype: torch.dtype | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = c.shape[1]
        ifo = torch.sigmoid(gates[:, : 3 * hidden])
        g = torch.tanh(gates[:, 3 * hidden:])
        i, f, o = ifo[:, :hidden], ifo[:, hidden:2 * hidden], ifo[:, 2 * hidden:]
        ctx.c_dtype = c.dtype
        if h_dtype is not None:
            c = c.float()  # the cell state stays fp32 even when a zero state was made in bf16
        c_new = torch.addcmul(f * c, i, g)
        tanh_c = torch.tanh(c_new)
        ctx.save_for_backward(ifo, g, c, tanh_c)
        ctx.gates_dtype = gates.dtype
        h = o * tanh_c
        return (h if h_dtype is None else h.to(h_dtype)), c_new

    @staticmethod
    def backward(ctx: Any, grad_h: torch.Tensor | None, grad_c: torch.Tensor | None) -> tuple[Any, ...]:
        ifo, g, c, tanh_c = ctx.saved_tensors
        if grad_h is not None:
            grad_h = grad_h.to(tanh_c.dtype)
        hidden = c.shape[1]
        i, f, o = ifo[:, :hidden], ifo[:, hidden:2 * hidden], ifo[:, 2 * hidden:]
        if grad_h is None:
            grad_h = torch.zeros_like(tanh_c)
        d_c = grad_h * o * (1 - tanh_c * tanh_c)
        if grad_c is not None:
            d_c = d_c + grad_c
        d_ifo = torch.cat([d_c * g, d_c * c, grad_h * tanh_c], 1) * (ifo * (1 - ifo))
        d_g = d_c * i * (1 - g * g)
        return torch.cat([d_ifo, d_g], 1).to(ctx.gates_dtype), (d_c * f).to(ctx.c_dtype), None


def fused_update(gates: torch.Tensor, c: torch.Tensor) -> LSTMState:
    """`ConvLSTMCell.update` with a fused backward (autograd.Function) when gradients are wanted.

    Under bf16 autocast the gates come from a bf16 convolution: h is returned in bf16 too (the next
    convolution would round it there anyway; batch norm, pooling and the decoder then move half the
    bytes), while the cell state c and all gate arithmetic stay fp32.
    """
    if not torch.is_grad_enabled():
        return ConvLSTMCell.update(gates, c)
    low = gates.dtype if gates.dtype in (torch.bfloat16, torch.float16) else None
    return _GateUpdate.apply(gates, c, low)


def use_fused_update(model: nn.Module) -> int:
    """Make every ConvLSTM cell of `model` train with `fused_update`; returns how many cells."""
    cells = [m for m in model.modules() if isinstance(m, ConvLSTMCell)]
    for cell in cells:
        cell.update = fused_update  # instance attribute: ConvLSTMCell.forward calls self.update
    return len(cells)
