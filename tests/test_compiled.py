"""Ahead-of-time compiled streaming engine: parity with the eager engine, caching, errors, predictor and CLI."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from echodfkd.cli import main
from echodfkd.data.phantom import make_clip
from echodfkd.errors import ModelError
from echodfkd.measures.masks import binarize, dice
from echodfkd.models import Student
from echodfkd.models import compiled as compiled_mod
from echodfkd.io.cache import CACHE_ENV
from echodfkd.models.compiled import engine_key, find_compiler, load_or_compile
from echodfkd.models.fast import StreamingStudent
from echodfkd.stream import Predictor

SIZE = 32

pytestmark = [pytest.mark.usefixtures("one_torch_thread"),
              pytest.mark.skipif(find_compiler() is None, reason="no C++ compiler for AOTInductor")]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny 2-block student fitted for a few steps to phantom LV masks, saved as a run; plus a cache dir."""
    torch.manual_seed(0)
    clip = make_clip(seed=5, index=0, size=SIZE, frames=40)
    x = torch.from_numpy(clip.frames.astype(np.float32))[None, :, None]
    y = torch.from_numpy(clip.lv.astype(np.float32))[None, :, None]
    model = Student(blocks=2, filters=6)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for it in range(25):
        s = (it * 5) % 30
        loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x[:, s:s + 8]), y[:, s:s + 8])
        opt.zero_grad()
        loss.backward()
        opt.step()
    root = tmp_path_factory.mktemp("compiled")
    run = root / "run"
    model.eval().save_pretrained(run, extra_config={"thresholds": {"dice": 0.5, "afd": 0.5}, "infer_size": SIZE})
    return model, run, root / "cache", clip.frames


def _stream(step, state, frames):
    outs = []
    with torch.inference_mode():
        for f in frames:
            logits, state = step(torch.from_numpy(f.astype(np.float32))[None, None], state)
            outs.append(logits.float())
    return torch.cat(outs)


def test_compiled_equals_eager_over_a_stream_and_is_cached(trained, monkeypatch):
    model, _, cache, frames = trained
    eng = load_or_compile(model, (SIZE, SIZE), "fp32", directory=cache)
    archives = list(cache.glob("*.pt2"))
    assert len(archives) == 1 and archives[0].with_suffix(".json").is_file()
    eager = StreamingStudent(model)
    # The recurrent state is fed back for 12 frames: a wrong state (e.g. h and c merged) diverges quickly.
    got = _stream(eng.step, eng.init_state(), frames[:12])
    ref = _stream(lambda x, s: (lambda o: (o[0], list(o[1:])))(eager(x, *s)),
                  eager.init_state(1, SIZE, SIZE).flat(), frames[:12])
    torch.testing.assert_close(got, ref, rtol=1e-4, atol=1e-4)
    # A second request loads the archive instead of building again.
    monkeypatch.setattr(compiled_mod, "compile_engine", lambda *a, **k: pytest.fail("rebuilt a cached engine"))
    again = load_or_compile(model, (SIZE, SIZE), "fp32", directory=cache)
    torch.testing.assert_close(_stream(again.step, again.init_state(), frames[:3]), ref[:3], rtol=1e-4, atol=1e-4)


def test_engine_key_tracks_weights_size_and_precision(trained):
    model = trained[0]
    key = engine_key(model, (SIZE, SIZE), "fp32")
    assert key == engine_key(model, (SIZE, SIZE), "fp32")
    assert key != engine_key(model, (SIZE, 2 * SIZE), "fp32") and key != engine_key(model, (SIZE, SIZE), "bf16")
    other = Student(blocks=2, filters=6).eval()
    other.load_state_dict(model.state_dict())
    with torch.no_grad():
        other.head.bias += 1e-3
    assert engine_key(other, (SIZE, SIZE), "fp32") != key


def test_predictor_compiled_bf16_matches_fp32(trained, monkeypatch):
    _, run, cache, frames = trained
    monkeypatch.setenv(CACHE_ENV, str(cache))
    lines: list[str] = []
    fp32 = Predictor(run).predict_clip(frames, 50)
    comp = Predictor(run, compile=True, precision="bf16", log=lines.append)
    assert comp.settings()["compiled"] is True and any("compiled in" in line for line in lines)
    bf16 = comp.predict_clip(frames, 50)
    eager_bf16 = Predictor(run, precision="bf16").predict_clip(frames, 50)
    assert fp32.masks.mean() > 5  # the fitted student segments something, so Dice is informative
    # Compiling must not change what bf16 computes; how close bf16 is to fp32 depends on the CPU's bf16
    # kernels (AMX vs AVX512-BF16) and on the model, which bench/--precision auto measure, so only a
    # loose bound here.
    assert dice(binarize(bf16.masks, 0.5), binarize(eager_bf16.masks, 0.5)) >= 0.99
    assert dice(binarize(bf16.masks, 0.5), binarize(fp32.masks, 0.5)) >= 0.95


def test_damaged_archive_is_refused_in_one_line(trained, tmp_path):
    model = trained[0]
    load_or_compile(model, (SIZE, SIZE), "fp32", directory=trained[2])
    cache = tmp_path / "cache"
    cache.mkdir()
    for src in trained[2].glob("*-fp32-*"):
        (cache / src.name).write_bytes(src.read_bytes()[:200] if src.suffix == ".pt2" else src.read_bytes())
    with pytest.raises(ModelError, match=r"not a loadable compiled engine .*delete it to rebuild"):
        load_or_compile(model, (SIZE, SIZE), "fp32", directory=cache)


def test_cli_compile_without_a_compiler(trained, tmp_path, monkeypatch, capsys):
    _, run, _, frames = trained
    from echodfkd.io.video import write_video

    video = tmp_path / "clip.avi"
    write_video(video, frames, 50.0)
    monkeypatch.setattr(compiled_mod, "find_compiler", lambda: None)
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "empty_cache"))
    code = main(["predict", str(video), "--student", str(run), "--out", str(tmp_path / "pred"), "--compile"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "needs a C++ compiler" in err[0]
    assert not (tmp_path / "pred").exists() or not any((tmp_path / "pred").glob("*.npz"))
    code = main(["predict", str(video), "--student", str(run), "--out", str(tmp_path / "pred"), "--compile",
                 "--backend", "onnx"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "applies to the torch backend" in err[0]


def test_batched_engines_use_the_subpixel_decoder(tmp_path, monkeypatch):
    """Several rows a call: the sub-pixel decoder (faster there); one row: the transposed one. Keys differ."""
    from pathlib import Path

    student = Student(blocks=2, filters=6).eval()
    built = []

    def fake_build(engine, size, path, batch=1, *args):
        built.append((batch, engine.subpixel))
        Path(path).write_bytes(b"")
        return Path(path)

    monkeypatch.setattr(compiled_mod, "compile_engine", fake_build)
    monkeypatch.setattr(compiled_mod, "CompiledStreamer", lambda path, engine, size, batch=1: engine)
    for batch in (1, 4):
        compiled_mod.load_or_compile(student, (16, 16), "fp32", directory=tmp_path, batch=batch)
    assert built == [(1, False), (4, True)]
    key = compiled_mod.engine_key(student, (16, 16), "fp32", batch=4)
    monkeypatch.setattr(compiled_mod, "BATCHED_SUBPIXEL", False)
    assert compiled_mod.engine_key(student, (16, 16), "fp32", batch=4) != key  # another graph, another archive
    assert compiled_mod.load_or_compile(student, (16, 16), "fp32", directory=tmp_path, batch=4).subpixel is False
