"""ConvLSTM cell and layer with an explicit state, usable over a clip or one frame at a time."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

LSTMState = tuple[torch.Tensor, torch.Tensor]


def is_channels_last(x: torch.Tensor) -> bool:
    """True for a 4-D tensor stored channels-last (and not also plain contiguous, as 1-channel ones are)."""
    return x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)


def stack_frames(frames: list[torch.Tensor]) -> torch.Tensor:
    """torch.stack(frames, 1) -> (N, T, C, H, W); channels-last frames stay channels innermost, so that
    reshaping to (N*T, C, H, W) is a channels-last view (no layout copy before batch norm and pooling)."""
    if is_channels_last(frames[0]):
        return torch.stack([f.permute(0, 2, 3, 1) for f in frames], 1).permute(0, 1, 4, 2, 3)
    return torch.stack(frames, 1)


class ConvLSTMCell(nn.Module):
    """One 3x3 convolution over concat(x, h) gives the gates i, f, o, g (no peepholes)."""

    #: How `forward_sequence` computes the input half of the gates: True = one batched conv over all
    #: frames, False = one fused conv per frame, None = choose by device (batched on GPUs only).
    batched_input: bool | None = None

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
        if is_channels_last(self.conv.weight):  # the layout of the cell's convolutions (no reorder at frame 0)
            z = z.contiguous(memory_format=torch.channels_last)
        return z, z

    def split_weights(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The gate kernel's input and hidden halves, contiguous (oneDNN's fast path needs that)."""
        w = self.conv.weight
        return w[:, : self.in_channels].contiguous(), w[:, self.in_channels:].contiguous()

    def input_gates(self, x: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """Gate pre-activations from the input alone (plus bias); batchable over all frames."""
        weight = self.split_weights()[0] if weight is None else weight
        return F.conv2d(x, weight, self.conv.bias, padding=self.conv.padding)

    @staticmethod
    def update(gates: torch.Tensor, c: torch.Tensor) -> LSTMState:
        """LSTM state update from gate pre-activations ordered i, f, o, g."""
        hidden = c.shape[1]
        ifo = torch.sigmoid(gates[:, : 3 * hidden])
        i, f, o = ifo[:, :hidden], ifo[:, hidden:2 * hidden], ifo[:, 2 * hidden:]
        c = torch.addcmul(f * c, i, torch.tanh(gates[:, 3 * hidden:]))
        return o * torch.tanh(c), c

    def recurrent_step(self, gates_x: torch.Tensor, state: LSTMState, weight_h: torch.Tensor | None = None) -> LSTMState:
        """Advance one frame given precomputed input gates; returns the new (h, c)."""
        h, c = state
        weight_h = self.split_weights()[1] if weight_h is None else weight_h
        return self.update(gates_x + F.conv2d(h, weight_h, None, padding=self.conv.padding), c)

    def forward(self, x: torch.Tensor, state: LSTMState | None = None) -> LSTMState:
        """One step on a frame batch (N, C, H, W); the state starts at zero when None."""
        if state is None:
            state = self.zero_state(x)
        # One convolution over concat(x, h): no weight slicing per frame.
        return self.update(self.conv(torch.cat([x, state[0]], 1)), state[1])

    def forward_sequence(self, x: torch.Tensor, state: LSTMState | None = None) -> tuple[torch.Tensor, LSTMState]:
        """Run over a clip (N, T, C, H, W); returns all hidden states (N, T, hidden, H, W) and the last state."""
        n, t, ch, hh, ww = x.shape
        if state is None:
            state = self.zero_state(x[:, 0])
        outputs = []
        batched = self.batched_input if self.batched_input is not None else x.device.type != "cpu"
        if not batched:
            # On CPUs one fused convolution per frame is 1.5-4x faster (forward and backward) than one huge
            # batched input convolution, which oneDNN handles poorly (measured on 2 cores, see stream/bench.py).
            # unbind, not x[:, k]: its backward stacks the frame gradients once, where T selects would each
            # add a zero-padded full-clip gradient (T^2 / 2 clip-sized additions per layer and step).
            for frame in x.unbind(1):
                state = self(frame, state)
                outputs.append(state[0])
        else:
            w_x, w_h = self.split_weights()  # sliced once per clip, not once per frame
            # The input half of the convolution does not depend on h, so it runs once for all frames.
            gates_x = self.input_gates(x.reshape(n * t, ch, hh, ww), w_x).reshape(n, t, -1, hh, ww)
            for k in range(t):
                state = self.recurrent_step(gates_x[:, k], state, w_h)
                outputs.append(state[0])
        return stack_frames(outputs), state
