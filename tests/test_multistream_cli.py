"""`predict FOLDER --streams N` and `serve` on a batched engine: equal to one stream, resumable, one-line refusals."""

from __future__ import annotations

import csv
import json
import threading

import numpy as np
import pytest
import torch

from echodfkd.cli import main
from echodfkd.data.phantom import make_clip
from echodfkd.io.video import write_video
from tiny_models import fitted_student, npz_arrays

SIZE = 32
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny fitted student and a folder of 5 phantom clips of different lengths."""
    root = tmp_path_factory.mktemp("ms")
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    run = fitted_student(root / "run", SIZE, steps=40)
    torch.set_num_threads(old)
    folder = root / "clips"
    for i in range(5):
        write_video(folder / f"clip{i}.avi", make_clip(seed=11, index=i, size=SIZE, frames=40).frames[:16 + 6 * i], 50)
    return run, folder


def _table(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_predict_streams_equals_one_stream(trained, tmp_path, capsys):
    run, folder = trained
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(["predict", str(folder), "--student", str(run), "--out", str(one)]) == 0
    assert main(["predict", str(folder), "--student", str(run), "--out", str(two), "--streams", "2"]) == 0
    a, b = npz_arrays(one), npz_arrays(two)
    assert sorted(a) == sorted(b) == [f"clip{i}" for i in range(5)]
    for name in a:
        assert np.abs(a[name]["masks"].astype(int) - b[name]["masks"].astype(int)).max() <= 1
        assert np.abs(a[name]["areas"] - b[name]["areas"]).max() <= 1
        ia, ib = json.loads(str(a[name]["info"])), json.loads(str(b[name]["info"]))
        assert ia["phases"] == ib["phases"] and ia["frames"] == ib["frames"]
    assert json.loads((one / "phases.json").read_text()) == json.loads((two / "phases.json").read_text())
    flags = [[r["FileName"], r["Flagged"]] for r in _table(one / "alerts.csv")]
    assert flags == [[r["FileName"], r["Flagged"]] for r in _table(two / "alerts.csv")]
    assert len(_table(one / "areas.csv")) == len(_table(two / "areas.csv"))
    meta = json.loads((two / "meta.json").read_text())
    assert meta["status"] == "done" and meta["streamed_frames"] == sum(16 + 6 * i for i in range(5))


def test_predict_streams_times_the_streaming_not_the_engine_build(trained, tmp_path, monkeypatch):
    """The frames/s that predict reports leave out building the batched engine (10-30 s when compiled)."""
    import time

    from echodfkd.stream.batched import BatchedEngine

    monkeypatch.setattr(BatchedEngine, "prepare", lambda self, batches: time.sleep(3.0))  # a slow build
    run, folder = trained
    out = tmp_path / "timed"
    assert main(["predict", str(folder), "--student", str(run), "--out", str(out), "--streams", "2"]) == 0
    meta = json.loads((out / "meta.json").read_text())
    assert meta["streamed_frames"] / meta["stream_fps"] < 3.0  # ~0.3 s of streaming, without the 3 s


def test_predict_streams_resumes_and_warmup(trained, tmp_path):
    run, folder = trained
    one, many = tmp_path / "one", tmp_path / "many"
    assert main(["predict", str(folder), "--student", str(run), "--out", str(one), "--warmup", "3"]) == 0
    assert main(["predict", str(folder), "--student", str(run), "--out", str(many), "--warmup", "3",
                 "--streams", "8"]) == 0  # more streams than clips
    (many / "clip2.npz").unlink()
    assert main(["predict", str(folder), "--student", str(run), "--out", str(many), "--warmup", "3",
                 "--streams", "3"]) == 0
    a, b = npz_arrays(one), npz_arrays(many)
    for name in a:
        assert np.abs(a[name]["masks"].astype(int) - b[name]["masks"].astype(int)).max() <= 1
    assert main(["predict", str(folder), "--student", str(run), "--out", str(many), "--warmup", "3",
                 "--streams", "3"]) == 0  # nothing left to do
    assert json.loads((many / "meta.json").read_text())["streamed_frames"] == 0


@pytest.mark.parametrize("value", ["0", "-1", "two"])
def test_predict_bad_streams_one_line(trained, tmp_path, capsys, value):
    run, folder = trained
    try:
        rc = main(["predict", str(folder), "--student", str(run), "--out", str(tmp_path / "p"), "--streams", value])
    except SystemExit as exc:  # refused by the parser
        rc = exc.code
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--streams" in err and "Traceback" not in err
    assert not (tmp_path / "p").exists()


def test_predict_streams_onnx_refused(trained, tmp_path, capsys):
    run, folder = trained
    rc = main(["predict", str(folder), "--student", str(run), "--out", str(tmp_path / "p"), "--streams", "2",
               "--backend", "onnx"])
    assert rc == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--streams" in err
    assert not list((tmp_path / "p").glob("*.npz"))


# ---------------------------------------------------------------------- serve
def test_serve_concurrent_uploads_step_together(trained, tmp_path):
    pytest.importorskip("fastapi", reason="the viewer extra is not installed")
    pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx")
    from fastapi.testclient import TestClient

    from echodfkd.viewer import create_app

    # a fitted student: a random one's soft masks sit at 125-128, so one level of batch-size rounding
    # moves hundreds of pixels across the 0.5 threshold
    run = trained[0]
    clips = [make_clip(seed=9, index=i, size=SIZE, frames=40).frames for i in range(4)]
    for i, c in enumerate(clips):
        write_video(tmp_path / f"c{i}.avi", c, 25)
    app = create_app(run, examples_cache=tmp_path / "cache")
    analyser = app.state.analyser
    streams, run_student = analyser.streams, analyser.student
    assert streams is not None
    together = threading.Barrier(len(clips), timeout=60)

    def student_together(frames, fps):  # every upload reaches the student before any starts streaming
        together.wait()
        return run_student(frames, fps)

    analyser.student = student_together
    answers: dict[int, dict] = {}
    with TestClient(app) as client:
        def upload(i: int) -> None:
            data = (tmp_path / f"c{i}.avi").read_bytes()
            r = client.post("/api/analyze", files={"file": (f"c{i}.avi", data, "video/x-msvideo")})
            assert r.status_code == 200, r.text
            answers[i] = r.json()

        threads = [threading.Thread(target=upload, args=(i,)) for i in range(len(clips))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(answers) == list(range(len(clips)))
        assert max(streams.batch_sizes) > 1  # concurrent uploads shared batched steps
        assert streams.engine.open_slots == 0
        together = threading.Barrier(1)
        concurrent = dict(answers)
        for i in range(len(clips)):  # the same uploads one at a time (the frames the viewer itself analyses)
            upload(i)
            assert answers[i]["frames"] == concurrent[i]["frames"]
            np.testing.assert_allclose(concurrent[i]["areas"], answers[i]["areas"], atol=1)
    assert streams.engine.open_slots == 0
