"""ConvLSTM cell and layer with an explicit state, usable over a clip or one frame at a time."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LSTMState = tuple[torch.Tensor, torch.Tensor]


class ConvLSTMCell(nn.Module):
    """One 3x3 convolution over concat(x, h) gives the gates i, f, o, g (no peepholes)."""

    def __init__(self, in_channels: int, hidden_channels: int, kernel_size: int = 3) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.hidden_channels = hidden_channels
        self.conv = nn.Conv2d(in_channels + hidden_channels, 4 * hidden_channels, kernel_size,
                              padding=kernel_size // 2, bias=True)

    def zero_state(self, x: torch.Tensor) -> LSTMState:
        """Zero (h, c) matching the batch and spatial size of input `x` (N, C, H, W)."""
        n, _, h, w = x.shape
        z = x.new_zeros(n, self.hidden_channels, h, w)
        return z, z

    def input_gates(self, x: torch.Tensor) -> torch.Tensor:
        """Gate pre-activations from the input alone (plus bias); batchable over all frames."""
        return F.conv2d(x, self.conv.weight[:, : self.in_channels], self.conv.bias,
                        padding=self.conv.padding)

    def recurrent_step(self, gates_x: torch.Tensor, state: LSTMState) -> LSTMState:
        """Advance one frame given precomputed input gates; returns the new (h, c)."""
        h, c = state
        gates = gates_x + F.conv2d(h, self.conv.weight[:, self.in_channels:], None, padding=self.conv.padding)
        i, f, o, g = gates.chunk(4, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(c)
        return h, c

    def forward(self, x: torch.Tensor, state: LSTMState | None = None) -> LSTMState:
        """One step on a frame batch (N, C, H, W); the state starts at zero when None."""
        if state is None:
            state = self.zero_state(x)
        return self.recurrent_step(self.input_gates(x), state)

    def forward_sequence(self, x: torch.Tensor, state: LSTMState | None = None) -> tuple[torch.Tensor, LSTMState]:
        """Run over a clip (N, T, C, H, W); returns all hidden states (N, T, hidden, H, W) and the last state."""
        n, t, ch, hh, ww = x.shape
        # The input half of the convolution does not depend on h, so it runs once for all frames.
        gates_x = self.input_gates(x.reshape(n * t, ch, hh, ww)).reshape(n, t, -1, hh, ww)
        if state is None:
            state = self.zero_state(x[:, 0])
        outputs = []
        for k in range(t):
            state = self.recurrent_step(gates_x[:, k], state)
            outputs.append(state[0])
        return torch.stack(outputs, dim=1), state
