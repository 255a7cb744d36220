"""ONNX export of the student's streaming step: (frame, h0, c0, h1, c1, ...) -> (logits, h0', c0', ...).

The exported graph is the `StreamingStudent` engine (same function as `Student.step`, to float
tolerance) at a fixed frame size and batch 1, the real-time use case; fixed shapes let ONNX Runtime
plan memory once. torch >= 2.9 defaults to the torch.export-based ("dynamo") exporter, which needs the
`onnxscript` package; the TorchScript ("legacy") exporter needs nothing else and works offline, so
`exporter="auto"` uses dynamo when onnxscript is importable and falls back to legacy otherwise or when
dynamo fails. The run's config (architecture, thresholds, size) is stored in the model's metadata.
"""

from __future__ import annotations

import importlib.util
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from echodfkd.errors import ModelError
from echodfkd.io.atomic import atomic_path
from echodfkd.models.fast import StreamingStudent
from echodfkd.models.student import Student, check_frame_size

EXPORTERS = ("auto", "dynamo", "legacy")
MIN_OPSET = 17


@dataclass
class ExportInfo:
    """What `export_onnx` produced."""

    path: Path
    exporter: str
    opset: int
    size: tuple[int, int]
    state_tensors: int
    note: str = ""


def state_names(n_tensors: int) -> list[str]:
    """Input names of the flat state: h0, c0, h1, c1, ..."""
    return [f"{k}{i}" for i in range(n_tensors // 2) for k in ("h", "c")]


def export_onnx(student: Student, path: str | os.PathLike, size: int | tuple[int, int] = 112,
                opset: int = MIN_OPSET, exporter: str = "auto", config: dict | None = None) -> ExportInfo:
    """Export the streaming step of `student` for (size x size) frames to `path` (atomic write)."""
    if exporter not in EXPORTERS:
        raise ModelError(f"exporter must be one of {EXPORTERS}, got {exporter!r}")
    if opset < MIN_OPSET:
        raise ModelError(f"opset must be >= {MIN_OPSET}, got {opset}")
    h, w = (size, size) if isinstance(size, int) else size
    for side in (h, w):
        check_frame_size(side, student.blocks, "export size", ModelError)
    path = Path(path)
    engine = StreamingStudent(student.cpu().eval(), channels_last=False)
    state = engine.init_state(1, h, w).flat()
    frame = torch.full((1, 1, h, w), 64.0)
    names = state_names(len(state))
    kwargs = dict(input_names=["frame", *names], output_names=["logits", *[f"{n}_out" for n in names]],
                  opset_version=opset)
    if exporter == "auto":
        order = ["dynamo", "legacy"] if importlib.util.find_spec("onnxscript") is not None else ["legacy"]
    else:
        order = [exporter]
    note, used = "", ""
    with atomic_path(path, suffix=".onnx") as tmp:
        for attempt in order:
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")  # deprecation / constant-folding chatter of the exporters
                    torch.onnx.export(engine, (frame, *state), str(tmp), dynamo=attempt == "dynamo",
                                      **({"external_data": False} if attempt == "dynamo" else {}), **kwargs)
                used = attempt
                break
            except Exception as exc:  # exporter failures come in many types
                if attempt == order[-1]:
                    raise ModelError(f"{path}: ONNX export failed with the {attempt} exporter "
                                     f"({str(exc).splitlines()[0][:200]})") from None
                note = f"dynamo exporter failed ({type(exc).__name__}); used legacy"
        _add_metadata(tmp, {"echodfkd_config": json.dumps(config or student.config),
                            "echodfkd_size": f"{h}x{w}", "echodfkd_exporter": used})
    return ExportInfo(path, used, opset, (h, w), len(state), note)


def _add_metadata(path: Path, props: dict[str, str]) -> None:
    import onnx

    model = onnx.load(str(path))
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))
