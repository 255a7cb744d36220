"""Streaming back-ends: one frame in, logits out, recurrent state kept inside (PyTorch or ONNX Runtime)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np

from echodfkd.errors import ModelError

#: Engine precisions (`echodfkd.models.fast.PRECISIONS`): fp32; bf16 (all bfloat16, state included: fastest,
#: but its masks drifted to Dice 0.99 of fp32 on real clips); mixed (bf16 convolutions, fp32 state and gates).
PRECISIONS = ("fp32", "bf16", "mixed")


class TorchEngine:
    """Streams frames through the `StreamingStudent` engine (same outputs as `Student.step`).

    `compile=True` on a CPU runs the ahead-of-time compiled engine (`echodfkd.models.compiled`: built once
    per weights/size/precision and cached; ~2.5x the eager bf16 fps); on other devices it uses torch.compile.
    """

    backend = "torch"

    def __init__(self, student, device: str = "cpu", compile: bool = False, precision: str = "fp32",
                 log: Callable[[str], None] | None = None) -> None:
        import torch

        from echodfkd.models.fast import for_precision

        if precision not in PRECISIONS:
            raise ModelError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        try:
            self.device = torch.device(device)
            self.net = for_precision(student.eval(), precision).to(self.device)
        except (RuntimeError, AssertionError) as exc:
            raise ModelError(f"cannot run the student on device {device!r} ({str(exc).splitlines()[0]})") from None
        self.student, self.precision, self.log = student, precision, log
        self.aot = compile and self.device.type == "cpu"
        self._compiled = None  # built on the first frame, when the size is known
        self._call = torch.compile(self.net, dynamic=False) if compile and not self.aot else self.net
        self.state: list | None = None

    def reset(self) -> None:
        """Start a new stream (zero state)."""
        self.state = None

    def prepare(self, height: int, width: int) -> None:
        """Build or load the compiled engine for this frame size now (otherwise done on the first frame)."""
        if self.aot and (self._compiled is None or self._compiled.size != (height, width)):
            from echodfkd.models.compiled import load_or_compile

            self._compiled = load_or_compile(self.student, (height, width), self.precision, log=self.log)
            self.state = None

    def step(self, frame: np.ndarray) -> np.ndarray:
        """One float32 frame (H, W) on the 0-255 scale -> logits (C, H, W)."""
        import torch

        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(frame, dtype=np.float32))[None, None].to(self.device)
            if self.aot:
                self.prepare(x.shape[2], x.shape[3])
                if self.state is None:
                    self.state = self._compiled.init_state()
                logits, self.state = self._compiled.step(x, self.state)
                return logits[0].float().numpy()
            if self.state is None:
                self.state = self.net.init_state(1, x.shape[2], x.shape[3], self.device).flat()
            out = self._call(x, *self.state)
            self.state = list(out[1:])
            return out[0][0].float().cpu().numpy()


class OnnxEngine:
    """Streams frames through an exported step graph with ONNX Runtime (state fed back each frame)."""

    backend = "onnx"

    def __init__(self, path: str | os.PathLike, threads: int | None = None) -> None:
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise ModelError(f"{path}: ONNX file not found (make it with `echodfkd export RUN --onnx {path}`)")
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
        try:
            self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelError(f"{path}: not a loadable ONNX model ({str(exc).splitlines()[0][:200]})") from None
        inputs = self.session.get_inputs()
        if not inputs or inputs[0].name != "frame":
            raise ModelError(f"{path}: not an echodfkd streaming export (first input is not 'frame')")
        self.frame_shape = tuple(inputs[0].shape)
        self.state_names = [i.name for i in inputs[1:]]
        self.state_shapes = [tuple(i.shape) for i in inputs[1:]]
        self.output_names = [o.name for o in self.session.get_outputs()]
        meta = self.session.get_modelmeta().custom_metadata_map
        self.metadata = dict(meta)
        self.state: list[np.ndarray] | None = None

    @property
    def size(self) -> tuple[int, int]:
        """The (H, W) the graph was exported for."""
        return int(self.frame_shape[2]), int(self.frame_shape[3])

    def reset(self) -> None:
        """Start a new stream (zero state)."""
        self.state = None

    def step(self, frame: np.ndarray) -> np.ndarray:
        """One float32 frame (H, W) on the 0-255 scale -> logits (C, H, W)."""
        if tuple(frame.shape) != self.size:
            raise ModelError(f"ONNX graph expects {self.size[0]}x{self.size[1]} frames, got "
                             f"{frame.shape[0]}x{frame.shape[1]}")
        if self.state is None:
            self.state = [np.zeros(s, dtype=np.float32) for s in self.state_shapes]
        feeds = {"frame": np.ascontiguousarray(frame, dtype=np.float32)[None, None]}
        feeds.update(zip(self.state_names, self.state))
        out = self.session.run(self.output_names, feeds)
        self.state = out[1:]
        return out[0][0]
