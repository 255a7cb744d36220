"""API-level tests of the browser viewer (FastAPI TestClient; no browser, no network)."""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the viewer extra is not installed (pip install 'echodfkd[viewer]')")
pytest.importorskip("httpx", reason="FastAPI's TestClient needs httpx")

from fastapi.testclient import TestClient  # noqa: E402
from viewer_support import dark_cavity_student, write_beating_avi  # noqa: E402

from echodfkd.commands import serve  # noqa: E402
from echodfkd.viewer import app as app_module  # noqa: E402
from echodfkd.viewer import create_app  # noqa: E402
from echodfkd.viewer import summary  # noqa: E402
from echodfkd.viewer.summary import estimate_ef, pair_beats  # noqa: E402
from echodfkd.viewer.uploads import sniff_container  # noqa: E402


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return dark_cavity_student(tmp_path_factory.mktemp("viewer") / "run")


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return write_beating_avi(tmp_path_factory.mktemp("clips") / "beating.avi", frames=48, size=64, fps=25.0)


def _upload(client, data: bytes, name: str = "clip.avi"):
    return client.post("/api/analyze", files={"file": (name, data, "video/x-msvideo")})


def test_upload_returns_areas_phases_alert_and_cleans_up(run_dir, clip, tmp_path, monkeypatch):
    app = create_app(run_dir, max_upload_mb=5, examples_cache=tmp_path / "cache")
    private = app.state.private
    seen = []
    decode = app_module.decode_upload

    def spy(path, name, max_frames):  # where does the upload land on disk, and is it there while decoding?
        seen.append((path, path.exists()))
        return decode(path, name, max_frames)

    monkeypatch.setattr(app_module, "decode_upload", spy)
    with TestClient(app) as client:
        r = _upload(client, clip.read_bytes(), "beating.avi")
        assert r.status_code == 200, r.text
        out = r.json()
        assert private.leftovers() == []  # nothing from the request stays on disk
    assert not private.root.exists()      # and the private folder is gone at shutdown
    path, existed = seen[0]
    assert existed and private.root in path.parents

    assert out["name"] == "beating.avi" and out["frames"] == 48 and out["fps"] == pytest.approx(25.0)
    areas = np.asarray(out["areas"])
    assert areas.shape == (48,) and areas.max() > 2 * areas.min() > 0  # the mask beats with the clip
    # 75 bpm at 25 fps: one beat every 20 frames, ED at 0/20/40 and ES at 10/30 (the ellipse's own timing)
    for phase, truth in (("ED", [20, 40]), ("ES", [10, 30])):
        found = out["phases"][phase]
        assert all(min(abs(f - t) for f in found) <= 1 for t in truth), (phase, found)
    assert set(out["alert"]) >= {"flag", "score", "reasons", "message"} and isinstance(out["alert"]["message"], str)
    assert len(out["latency_ms"]) == 48 and out["latency"]["median"] > 0
    assert 20 < out["ef"]["value"] < 100 and out["ef"]["beats"]
    assert out["ef"]["trusted"] is (not out["alert"]["flag"])  # an alert demotes the EF (page: "not reliable")
    sheet = out["sheet"]
    assert sheet["png"].startswith("data:image/png;base64,") and sheet["mask_png"].startswith("data:image/png")
    assert sheet["count"] == 48 and sheet["columns"] * sheet["tile_width"] >= sheet["tile_width"]


def test_non_video_upload_is_refused_with_a_clear_message(run_dir, tmp_path):
    app = create_app(run_dir, examples_cache=tmp_path / "cache")
    with TestClient(app) as client:
        r = _upload(client, b"%PDF-1.7 this is a report, not a video\n" * 20, "report.avi")
        assert r.status_code == 415
        assert "not a video" in r.json()["error"] and "AVI and MP4" in r.json()["error"]
        # Looks like an AVI by its first bytes but cannot be decoded: refused after decoding, not by name.
        r = _upload(client, b"RIFF\x00\x10\x00\x00AVI LIST" + bytes(3000), "broken.avi")
        assert r.status_code == 415 and r.json()["error"].startswith("broken.avi: not a readable video")
        assert str(app.state.private.root) not in r.json()["error"]  # no private path leaks to the page
        r = client.post("/api/analyze", files={"other": ("", b"")})
        assert r.status_code == 400 and "No file received" in r.json()["error"]
        r = _upload(client, b"", "empty.avi")  # a file was chosen, but it holds nothing
        assert r.status_code == 400 and r.json()["error"] == "empty.avi: empty file (0 bytes)"
        r = client.post("/api/analyze", content=b"", headers={"X-Filename": "raw.avi"})
        assert r.status_code == 400 and r.json()["error"] == "raw.avi: empty file (0 bytes)"
        assert app.state.private.leftovers() == []


def _strict_json(text: str):
    """Parse JSON as a browser does: NaN/Infinity tokens are an error."""
    def refuse(token):
        raise AssertionError(f"non-standard JSON token {token} in the server's answer")
    return json.loads(text, parse_constant=refuse)


def test_truncated_avi_is_refused_like_the_cli(run_dir, clip, tmp_path):
    from echodfkd.errors import VideoError
    from echodfkd.io.video import read_video

    cut = tmp_path / "cut.avi"
    cut.write_bytes(clip.read_bytes()[: len(clip.read_bytes()) // 4])  # a quarter of the frames survive
    with pytest.raises(VideoError) as cli:  # what `predict` says for the same file
        read_video(cut)
    app = create_app(run_dir, examples_cache=tmp_path / "cache")
    with TestClient(app, raise_server_exceptions=False) as client:
        r = _upload(client, cut.read_bytes(), "cut.avi")
    assert 400 <= r.status_code < 500, r.text
    message = _strict_json(r.text)["error"]
    assert "truncated video: header says 48 frames" in message and "\n" not in message
    assert message == "cut.avi: " + str(cli.value).split(": ", 1)[1]
    assert app.state.private.leftovers() == []


def test_short_clip_answer_is_strict_json(run_dir, tmp_path):
    # 10 frames: too short for the alert's periodicity feature, which is NaN; the page still gets valid JSON.
    app = create_app(run_dir, examples_cache=tmp_path / "cache")
    with TestClient(app) as client:
        r = _upload(client, write_beating_avi(tmp_path / "ten.avi", frames=10, size=32).read_bytes(), "ten.avi")
    assert r.status_code == 200, r.text
    out = _strict_json(r.text)
    assert "aperiodic" in out["alert"]["features"] and out["alert"]["features"]["aperiodic"] is None
    assert app_module.finite({"a": [float("nan"), np.float32("inf"), np.array([1.5, np.nan])], "b": 2}) == \
        {"a": [None, None, [1.5, None]], "b": 2}
    body = app_module.StrictJSONResponse({"x": float("-inf"), "y": np.float64(0.25)}).body
    assert _strict_json(body.decode()) == {"x": None, "y": 0.25}


def test_oversize_upload_is_refused_both_by_header_and_while_streaming(run_dir, clip, tmp_path):
    app = create_app(run_dir, max_upload_mb=0.01, examples_cache=tmp_path / "cache")  # 10 KiB
    big = clip.read_bytes()
    assert len(big) > 20 * 1024
    with TestClient(app) as client:
        r = _upload(client, big)
        assert r.status_code == 413
        assert "too large" in r.json()["error"] and "limit is 0 MB" not in r.json()["error"]

        def chunks():  # no Content-Length: the limit must hold while the body streams in
            for i in range(0, len(big), 4096):
                yield big[i:i + 4096]

        r = client.post("/api/analyze", content=chunks(), headers={"X-Filename": "clip.avi"})
        assert r.status_code == 413 and "too large" in r.json()["error"]
        assert app.state.private.leftovers() == []


def test_mp4_upload_is_accepted(run_dir, tmp_path):
    import cv2
    from echonet_folders import beating_clip

    path = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 25.0, (64, 64), True)
    if not writer.isOpened():
        pytest.skip("this OpenCV build cannot write MP4")
    for frame in beating_clip(frames=12, look="cavity"):
        writer.write(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
    writer.release()
    app = create_app(run_dir, examples_cache=tmp_path / "cache")
    with TestClient(app) as client:
        r = client.post("/api/analyze", files={"file": ("clip.mp4", path.read_bytes(), "video/mp4")})
    assert r.status_code == 200, r.text
    assert r.json()["frames"] == 12


def test_folders_left_by_a_killed_server_are_swept(tmp_path):
    from echodfkd.viewer.uploads import PrivateFolder

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f"{PrivateFolder.PREFIX}{dead.pid}-abc123"
    (stale / "req-x").mkdir(parents=True)
    (stale / "req-x" / "upload.bin").write_bytes(b"old upload")
    alive = tmp_path / f"{PrivateFolder.PREFIX}{os.getpid()}-def456"
    alive.mkdir()
    folder = PrivateFolder(tmp_path)
    assert not stale.exists() and alive.exists() and folder.root.exists()
    assert folder.root.stat().st_mode & 0o777 == 0o700
    folder.cleanup()
    assert not folder.root.exists()


def test_raw_body_upload_and_page_assets(run_dir, tmp_path):
    short = write_beating_avi(tmp_path / "short.avi", frames=12, size=32)
    app = create_app(run_dir, examples_cache=tmp_path / "cache")
    with TestClient(app) as client:
        r = client.post("/api/analyze", content=short.read_bytes(), headers={"X-Filename": "../../etc/x.avi"})
        assert r.status_code == 200 and r.json()["name"] == "x.avi"
        page = client.get("/")
        assert page.status_code == 200 and 'id="curve"' in page.text and 'type="file"' in page.text
        assert "default-src 'self'" in page.headers["content-security-policy"]
        for asset in ("app.js", "draw.js", "style.css", "favicon.svg"):
            assert client.get(f"/static/{asset}").status_code == 200
        for asset in ("/", "/static/app.js", "/static/draw.js", "/static/style.css"):
            assert "://" not in client.get(asset).text  # no CDN or any remote URL
        info = client.get("/api/info").json()
        assert info["model"] == f"{run_dir.parent.name}/run" and info["max_upload_mb"] == 200 and info["examples"]
    # A run folder called 'student' (as the demo's) is named with its parent: the header is not 'student student'.
    assert app_module.model_label(tmp_path / "demo" / "student") == "demo/student"
    assert app_module.model_label(tmp_path / "my_run") == "my_run"


def test_teacher_checkpoint_is_shown_side_by_side(run_dir, tmp_path):
    from echodfkd.teacher.model import build_segmenter, save_echonet_checkpoint

    arch = "lraspp_mobilenet_v3_large"  # the lightest supported teacher; random weights suffice here
    ckpt = save_echonet_checkpoint(build_segmenter(arch), tmp_path / "teacher.pt", arch=arch)
    app = create_app(run_dir, teacher=ckpt, examples_cache=tmp_path / "cache")
    with TestClient(app) as client:
        assert client.get("/api/info").json()["teacher"] is True
        out = _upload(client, write_beating_avi(tmp_path / "short.avi", frames=12, size=32).read_bytes()).json()
    assert len(out["teacher"]["areas"]) == out["frames"] == 12
    assert set(out["teacher"]["phases"]) == {"ED", "ES"} and "value" in out["teacher"]["ef"]
    assert out["sheet"]["teacher_mask_png"].startswith("data:image/png;base64,")


def test_lv_rv_student_shows_its_rv_mask(tmp_path):
    run = dark_cavity_student(tmp_path / "lvrv", out_channels=2)
    app = create_app(run, examples_cache=tmp_path / "cache")
    with TestClient(app) as client:
        out = _upload(client, write_beating_avi(tmp_path / "short.avi", frames=12, size=32).read_bytes()).json()
    assert out["sheet"]["rv_mask_png"].startswith("data:image/png;base64,")
    one = create_app(dark_cavity_student(tmp_path / "lv"), examples_cache=tmp_path / "cache2")
    with TestClient(one) as client:
        out = _upload(client, write_beating_avi(tmp_path / "short2.avi", frames=12, size=32).read_bytes()).json()
    assert "rv_mask_png" not in out["sheet"]  # an LV-only student draws no RV


def test_bundled_example_is_generated_once_and_carries_truth(run_dir, tmp_path):
    pytest.importorskip("echodfkd.data.phantom")
    app = create_app(run_dir, examples_cache=tmp_path / "cache")
    with TestClient(app) as client:
        r = client.post("/api/examples/phantom")
        assert r.status_code == 200, r.text
        out = r.json()
        assert out["truth"]["ED"] and out["truth"]["ES"] and out["frames"] == len(out["areas"])
        folders = list((tmp_path / "cache" / "viewer-examples").iterdir())
        assert len(folders) == 1 and (folders[0] / "FileList.csv").exists()
        r = client.post("/api/examples/nope")
        assert r.status_code == 400 and "unknown example" in r.json()["error"]


def test_serve_binds_loopback_by_default_and_warns_otherwise(tmp_path, run_dir, monkeypatch, capsys):
    parser = argparse.ArgumentParser()
    serve.add_arguments(parser)
    args = parser.parse_args(["--student", str(run_dir)])
    assert args.host == "127.0.0.1" and args.port == 7860 and args.max_upload_mb == 200
    assert serve.is_loopback("127.0.0.1") and serve.is_loopback("::1") and serve.is_loopback("localhost")
    assert not serve.is_loopback("0.0.0.0") and not serve.is_loopback("example.org")

    import uvicorn

    calls = []
    monkeypatch.setattr(uvicorn.Server, "run",
                        lambda self, sockets: calls.append(sockets[0].getsockname()[:2]))
    engines = []
    monkeypatch.setattr(app_module, "_load_predictor",
                        lambda run, device, compile, precision: engines.append((compile, precision)) or object())
    args.port = _free_port()
    assert serve.run(args) == 0 and calls[-1] == ("127.0.0.1", args.port)
    assert "warning" not in capsys.readouterr().err and engines[-1] == (False, "fp32")
    assert serve.run(parser.parse_args(["--student", str(run_dir), "--host", "0.0.0.0", "--port", str(_free_port()),
                                        "--compile", "--precision", "bf16"])) == 0
    assert "warning: binding to 0.0.0.0" in capsys.readouterr().err and engines[-1] == (True, "bf16")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_serve_on_a_busy_port_says_so_in_one_line_before_any_url(run_dir, monkeypatch, capsys):
    import uvicorn

    from echodfkd.cli import main
    loaded = []
    monkeypatch.setattr(app_module, "_load_predictor", lambda *a: loaded.append(a) or object())
    monkeypatch.setattr(uvicorn.Server, "run", lambda self, sockets: pytest.fail("served on a busy port"))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        assert main(["serve", "--student", str(run_dir), "--port", str(port)]) == 2  # refused, as bad input is
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [f"echodfkd serve: error: port {port} is in use"]
    assert "http://" not in err and loaded == []  # no URL shown, no model loaded


def test_container_sniffing_and_ef_pairing():
    assert sniff_container(b"RIFF\x10\x00\x00\x00AVI LIST") == "avi"
    assert sniff_container(b"\x00\x00\x00\x18ftypmp42\x00\x00") == "mp4"
    assert sniff_container(b"\x89PNG\r\n\x1a\n\x00\x00\x00\x00") is None
    assert pair_beats([0, 20, 40], [10, 30]) == [(0, 10), (20, 30)]
    masks = np.zeros((12, 32, 32), bool)
    masks[2, 4:28, 10:22] = True   # ED: 24 x 12
    masks[6, 8:24, 12:20] = True   # ES: 16 x 8
    ef = estimate_ef(masks, [2], [6])
    assert ef["beats"][0]["fac"] == pytest.approx(100 * (1 - 128 / 288), abs=0.1)
    assert 50 < ef["value"] < 90 and ef["beats"][0]["used"]
    assert estimate_ef(masks, [], [])["value"] is None


def test_every_ed_es_beat_is_listed_even_when_it_gives_no_ef():
    # The chips show ED 2 and ES 9; the mask is empty at ES 9 (e.g. a blank frame): the beats table must still
    # list that beat, with why it gives no EF, rather than say "no complete beat".
    masks = np.zeros((12, 32, 32), bool)
    masks[2, 4:28, 10:22] = True
    ef = estimate_ef(masks, [2], [9])
    assert ef["value"] is None and [(b["ed"], b["es"]) for b in ef["beats"]] == [(2, 9)]
    beat = ef["beats"][0]
    assert beat["used"] is False and beat["ef"] is None and "empty at ES" in beat["note"]
    assert "non-empty mask" in ef["reason"]
    # Two beats, one usable and one on the last frame: both listed, only the inner one in the mean.
    masks[6, 8:24, 12:20] = True
    masks[9], masks[11, 8:24, 12:20] = masks[2], True
    ef = estimate_ef(masks, [2, 9], [6, 11])
    assert [(b["ed"], b["es"], b["used"]) for b in ef["beats"]] == [(2, 6, True), (9, 11, False)]
    assert ef["value"] == ef["beats"][0]["ef"] and "cut short" in ef["beats"][1]["note"]


def test_beats_come_from_the_same_ed_es_frames_as_the_chips(run_dir, clip, tmp_path):
    app = create_app(run_dir, examples_cache=tmp_path / "cache")
    with TestClient(app) as client:
        out = _upload(client, clip.read_bytes(), "beating.avi").json()
    phases, beats = out["phases"], out["ef"]["beats"]
    assert beats and all(b["ed"] in phases["ED"] and b["es"] in phases["ES"] for b in beats)
    assert [(b["ed"], b["es"]) for b in beats] == summary.beat_pairs(phases["ED"], phases["ES"])


def test_engine_options_reach_the_predictor(run_dir, clip, tmp_path):
    app = create_app(run_dir, examples_cache=tmp_path / "cache", precision="bf16")
    assert app.state.analyser.predictor.settings()["precision"] == "bf16"
    with TestClient(app) as client:
        r = _upload(client, clip.read_bytes(), "beating.avi")
        assert r.status_code == 200, r.text
        found = r.json()["phases"]["ED"]
    assert all(min(abs(f - t) for f in found) <= 1 for t in (20, 40))  # same beats as fp32 (see above)
