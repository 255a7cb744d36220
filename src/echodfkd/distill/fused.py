"""The ConvLSTM gate update as one autograd function, for training on CPUs.

Autograd of the plain update (`ConvLSTMCell.update`) slices the gate tensor five times; each slice's
backward allocates a zero tensor of the full gate size and copies into it, then adds the pieces up. Here
the backward writes the four gate gradients once, with one concatenation: the same arithmetic and the
same values in fp32 (to float rounding), less memory traffic. Under bf16 autocast h is kept in bf16 (c in
fp32). Only training uses it; streaming keeps the plain update (no autograd there). With `compiled`
(distill --compile-gates) the gate arithmetic itself runs torch.compile'd: 1.08x frames per CPU-second
at 56^2 in bf16 over the eager math (benchmarks/bench_train.py, +cgates), after a one-off build.
"""

from __future__ import annotations

import functools
import logging
from typing import Any

import torch
from torch import nn

from echodfkd.models.convlstm import ConvLSTMCell, LSTMState

log = logging.getLogger(__name__)


def _forward_math(gates: torch.Tensor, c: torch.Tensor, hidden: int, low: bool) -> tuple[torch.Tensor, ...]:
    """h, c' and what the backward needs (ifo, g, c in fp32 when `low`, tanh(c'))."""
    ifo = torch.sigmoid(gates[:, : 3 * hidden])
    g = torch.tanh(gates[:, 3 * hidden:])
    i, f, o = ifo[:, :hidden], ifo[:, hidden:2 * hidden], ifo[:, 2 * hidden:]
    if low:
        c = c.float()  # the cell state stays fp32 even when a zero state was made in bf16
    c_new = torch.addcmul(f * c, i, g)
    tanh_c = torch.tanh(c_new)
    h = o * tanh_c
    return (h.to(gates.dtype) if low else h), c_new, ifo, g, c, tanh_c


def _backward_math(grad_h: torch.Tensor, grad_c: torch.Tensor | None, ifo: torch.Tensor, g: torch.Tensor,
                   c: torch.Tensor, tanh_c: torch.Tensor, hidden: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of the gate pre-activations (in the gates' dtype) and of c (fp32 under autocast)."""
    grad_h = grad_h.to(tanh_c.dtype)
    i, f, o = ifo[:, :hidden], ifo[:, hidden:2 * hidden], ifo[:, 2 * hidden:]
    d_c = grad_h * o * (1 - tanh_c * tanh_c)
    if grad_c is not None:
        d_c = d_c + grad_c
    d_ifo = torch.cat([d_c * g, d_c * c, grad_h * tanh_c], 1) * (ifo * (1 - ifo))
    d_g = d_c * i * (1 - g * g)
    return torch.cat([d_ifo, d_g], 1), d_c * f


class GateMath:
    """The gate math of a model's cells: eager, or torch.compile'd (one graph each way, dynamic shapes).

    Compiled, the ~20 pointwise ops per frame and layer become a few fused loops. It is built on the
    first training step (~45 s on 2 cores, then reused from Inductor's on-disk cache); a build or run that
    fails falls back to the eager math with one warning line.
    """

    def __init__(self, compiled: bool = False) -> None:
        self.compiled = compiled
        self.forward: Any = torch.compile(_forward_math, dynamic=True) if compiled else _forward_math
        self.backward: Any = torch.compile(_backward_math, dynamic=True) if compiled else _backward_math

    def run(self, name: str, *args: Any) -> tuple[torch.Tensor, ...]:
        """The forward or backward math on `args`."""
        try:
            return getattr(self, name)(*args)
        except Exception as exc:  # noqa: BLE001 - a compiler fault of any kind: eager math instead
            if not self.compiled:
                raise
            reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
            log.warning("distill: compiling the gate update failed (%s: %s); eager gate math instead",
                        type(exc).__name__, reason)
            self.forward, self.backward, self.compiled = _forward_math, _backward_math, False
            return getattr(self, name)(*args)


EAGER = GateMath()


class _GateUpdate(torch.autograd.Function):
    """(gates i,f,o,g pre-activations, c) -> (h, c'): c' = f*c + i*g, h = o*tanh(c')."""

    @staticmethod
    def forward(ctx: Any, gates: torch.Tensor, c: torch.Tensor, h_dtype: torch.dtype | None = None,
                math: GateMath = EAGER) -> tuple[torch.Tensor, torch.Tensor]:
        ctx.c_dtype, ctx.gates_dtype, ctx.math = c.dtype, gates.dtype, math
        h, c_new, ifo, g, c32, tanh_c = math.run("forward", gates, c, c.shape[1], h_dtype is not None)
        ctx.save_for_backward(ifo, g, c32, tanh_c)
        return h, c_new

    @staticmethod
    def backward(ctx: Any, grad_h: torch.Tensor | None, grad_c: torch.Tensor | None) -> tuple[Any, ...]:
        ifo, g, c, tanh_c = ctx.saved_tensors
        if grad_h is None:
            grad_h = torch.zeros_like(tanh_c)
        d_gates, d_c = ctx.math.run("backward", grad_h, grad_c, ifo, g, c, tanh_c, c.shape[1])
        return d_gates.to(ctx.gates_dtype), d_c.to(ctx.c_dtype), None, None


def fused_update(gates: torch.Tensor, c: torch.Tensor, math: GateMath = EAGER) -> LSTMState:
    """`ConvLSTMCell.update` with a fused backward (autograd.Function) when gradients are wanted.

    Under bf16 autocast the gates come from a bf16 convolution: h is returned in bf16 too (the next
    convolution would round it there anyway; batch norm, pooling and the decoder then move half the
    bytes), while the cell state c and all gate arithmetic stay fp32.
    """
    if not torch.is_grad_enabled():
        return ConvLSTMCell.update(gates, c)
    low = gates.dtype if gates.dtype in (torch.bfloat16, torch.float16) else None
    return _GateUpdate.apply(gates, c, low, math)


_COMPILED: GateMath | None = None


def use_fused_update(model: nn.Module, compiled: bool = False) -> int:
    """Make every ConvLSTM cell of `model` train with `fused_update` (math compiled or not); returns how many cells."""
    global _COMPILED
    math = EAGER
    if compiled:
        _COMPILED = _COMPILED or GateMath(compiled=True)  # one build per process, shared by every model
        math = _COMPILED
    update = functools.partial(fused_update, math=math)
    cells = [m for m in model.modules() if isinstance(m, ConvLSTMCell)]
    for cell in cells:
        cell.update = update  # instance attribute: ConvLSTMCell.forward calls self.update
    return len(cells)
