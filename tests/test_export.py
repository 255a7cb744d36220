"""Fast inference engine parity, ONNX export of the streaming step, `echodfkd export`/`bench` commands."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from echodfkd.cli import main
from echodfkd.data.phantom import make_clip
from echodfkd.io.video import write_video
from echodfkd.models import Student
from echodfkd.models.export import export_onnx, state_names
from echodfkd.models.fast import StreamingStudent, upsample_conv_as_transposed
from echodfkd.stream.onnx_check import check_onnx


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _student(positive_bn: bool = False, **kw) -> Student:
    torch.manual_seed(0)
    model = Student(**kw).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5) if positive_bn else m.weight.uniform_(-1.0, 1.5)
                m.bias.uniform_(-0.3, 0.3)
    return model


def test_transposed_conv_equals_upsample_then_conv():
    torch.manual_seed(0)
    x, w, b = torch.randn(2, 5, 7, 6), torch.randn(3, 5, 3, 3), torch.randn(3)
    ref = torch.nn.functional.conv2d(torch.nn.functional.interpolate(x, scale_factor=2.0), w, b, padding=1)
    got = torch.nn.functional.conv_transpose2d(x, upsample_conv_as_transposed(w), b, stride=2, padding=1)
    torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kw", [dict(blocks=4, positive_bn=True), dict(blocks=3), dict(blocks=3, skip=True),
                                dict(blocks=3, layers=2, residual=True), dict(blocks=2, out_channels=2),
                                dict(blocks=1), dict(blocks=4, positive_bn=True, pad=16),
                                dict(blocks=3, skip=True, residual=True, pad=16), dict(blocks=2, layers=2, pad=5)])
def test_fast_engine_equals_student(kw):
    kw = dict(kw)
    pad = kw.pop("pad", 1)
    model = _student(**kw)
    engine = StreamingStudent(model, pad_channels=pad)
    if kw.get("positive_bn"):
        assert engine.pool_first[:3] == [True, True, True]  # the BN-after-pool path is exercised
    clip = torch.rand(2, 6, 1, 32, 32) * 255
    with torch.no_grad():
        full = model(clip)
        state, outs = None, []
        for t in range(clip.shape[1]):
            logits, state = engine.step(clip[:, t], state)
            outs.append(logits)
        _, ref_state = model(clip, return_state=True)
    torch.testing.assert_close(torch.stack(outs, 1), full, rtol=1e-4, atol=1e-4)
    # Padded channels stay exactly zero, and the real channels of the state match the reference's.
    for (h, c), (rh, rc) in zip(state.cells, ref_state.cells):
        assert not h[:, rh.shape[1]:].any() and not c[:, rc.shape[1]:].any()
    for got, ref in zip(engine.to_student_state(state).flat(), ref_state.flat()):
        torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)
    # A reference state moved into the engine continues the stream identically.
    moved = engine.from_student_state(ref_state)
    with torch.no_grad():
        nxt, _ = engine.step(clip[:, 0], moved)
        ref_nxt, _ = model.step(clip[:, 0], ref_state)
    torch.testing.assert_close(nxt, ref_nxt, rtol=1e-4, atol=1e-4)


def test_onnx_parity(tmp_path):
    model = _student(blocks=3)
    info = export_onnx(model, tmp_path / "s.onnx", size=32)
    assert info.exporter in ("legacy", "dynamo") and info.opset >= 17 and info.state_tensors == 6
    graph = onnx.load(str(tmp_path / "s.onnx"))
    assert [i.name for i in graph.graph.input] == ["frame", *state_names(6)]
    meta = {p.key: p.value for p in graph.metadata_props}
    assert json.loads(meta["echodfkd_config"])["blocks"] == 3 and meta["echodfkd_size"] == "32x32"
    frames = np.random.default_rng(0).integers(0, 256, (12, 32, 32), dtype=np.uint8)
    assert check_onnx(tmp_path / "s.onnx", model, frames) < 1e-4


def test_export_command_and_onnx_backend(tmp_path, capsys):
    run = tmp_path / "run"
    _student(blocks=2).save_pretrained(run, extra_config={"infer_size": 64})
    assert main(["export", "--student", str(run), "--check-frames", "8"]) == 0
    out = capsys.readouterr().out
    assert "max |onnxruntime - pytorch| logit" in out and (run / "student.onnx").is_file()
    video = tmp_path / "clip.avi"
    write_video(video, make_clip(seed=1, index=0, size=96, frames=40).frames[:16], 25)
    for backend in ("torch", "onnx"):
        assert main(["predict", str(video), "--student", str(run), "--out", str(tmp_path / backend),
                     "--backend", backend]) == 0
    with np.load(tmp_path / "torch" / "clip.npz") as a, np.load(tmp_path / "onnx" / "clip.npz") as b:
        assert a["masks"].shape == (16, 96, 96)
        assert np.abs(a["masks"].astype(int) - b["masks"]).max() <= 1


@pytest.mark.parametrize("args,message", [
    (["--opset", "13"], "--opset"),
    (["--size", "31"], "--size 31"),
    (["--size", "0"], "--size"),
    (["--check-frames", "-1"], "--check-frames"),
    (["--tolerance", "-1"], "--tolerance"),
])
def test_export_bad_inputs(tmp_path, capsys, args, message):
    run = tmp_path / "run"
    _student(blocks=2).save_pretrained(run)
    assert main(["export", "--student", str(run), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and "Traceback" not in err
    assert sorted(p.name for p in run.iterdir()) == ["config.json", "model.safetensors"]  # nothing written


def test_export_failed_parity_keeps_nothing_and_old_spellings(tmp_path, capsys):
    run = tmp_path / "run"
    _student(blocks=2).save_pretrained(run)
    assert main(["export", "--student", str(run), "--check-frames", "4", "--size", "32", "--tolerance", "1e-30"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "differs from PyTorch" in err and "not written" in err
    assert sorted(p.name for p in run.iterdir()) == ["config.json", "model.safetensors"]
    onnx = tmp_path / "old.onnx"
    assert main(["export", str(run), "--onnx", str(onnx), "--check-frames", "0", "--size", "32"]) == 0
    err = capsys.readouterr().err
    assert "positional RUN is deprecated" in err and "--onnx is deprecated; use --out DIR" in err and onnx.is_file()


def test_export_missing_run(tmp_path, capsys):
    assert main(["export", "--student", str(tmp_path / "nope")]) == 2
    assert "not found" in capsys.readouterr().err


@pytest.mark.parametrize("batched", [True, False])
def test_forward_sequence_paths_agree(batched, monkeypatch):
    from echodfkd.models.convlstm import ConvLSTMCell

    model = _student(blocks=2, layers=2)
    clip = torch.rand(2, 5, 1, 16, 16) * 255
    with torch.no_grad():
        state, steps = None, []
        for t in range(clip.shape[1]):
            logits, state = model.step(clip[:, t], state)
            steps.append(logits)
        monkeypatch.setattr(ConvLSTMCell, "batched_input", batched)
        full = model(clip)
    torch.testing.assert_close(full, torch.stack(steps, 1), rtol=1e-4, atol=1e-4)
