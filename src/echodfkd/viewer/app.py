"""The viewer's FastAPI app: a static page plus a small JSON API that runs the student on a clip."""

from __future__ import annotations

import atexit
import json
import logging
import math
import os
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Callable

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool

from echodfkd.errors import EchoDFKDError
from echodfkd.viewer.analyse import Analyser
from echodfkd.viewer.examples import ExampleStore
from echodfkd.viewer.uploads import (MB, PrivateFolder, UploadRejected, add_conversion, decode_upload,
                                     receive_upload)

STATIC = Path(__file__).resolve().parent / "static"
log = logging.getLogger("echodfkd.viewer")

# Everything the page needs comes from this server; inline data: images carry the frames.
CSP = ("default-src 'self'; img-src 'self' data: blob:; style-src 'self'; script-src 'self'; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'")


def _load_teacher(teacher: str | os.PathLike | Callable | None, arch: str | None, device: str) -> Callable | None:
    if teacher is None or callable(teacher):
        return teacher
    from echodfkd.teacher.model import load_teacher
    return load_teacher(teacher, arch=arch, device=device).eval()


def _load_predictor(run_dir: str | os.PathLike, device: str, compile: bool, precision: str) -> Any:
    from echodfkd.stream import Predictor
    return Predictor(run_dir, device=device, compile=compile, precision=precision,
                     log=lambda line: print(line, flush=True))


def _shared_streams(predictor: Any) -> Any:
    """One batched engine that concurrent uploads step through together (a torch `Predictor`), else None."""
    from echodfkd.stream import Predictor
    from echodfkd.stream.multistream import MultiStream

    if isinstance(predictor, Predictor) and predictor.backend == "torch":
        return MultiStream.from_predictor(predictor)
    return None


def finite(value: Any) -> Any:
    """`value` with every NaN/inf float (also numpy scalars and arrays) replaced by None: strict JSON."""
    if isinstance(value, dict):
        return {str(k): finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):  # numpy scalar or array
        return finite(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class StrictJSONResponse(JSONResponse):
    """JSON that browsers can parse: no NaN/Infinity tokens (non-finite numbers are sent as null)."""

    def render(self, content: Any) -> bytes:
        """Encode `content` strictly (allow_nan=False) after replacing non-finite floats."""
        return json.dumps(finite(content), allow_nan=False, ensure_ascii=False,
                          separators=(",", ":")).encode("utf-8")


def _error(status: int, message: str) -> JSONResponse:
    return StrictJSONResponse({"error": message}, status_code=status)


def model_label(run_dir: Path) -> str:
    """The run's name for the page header ('Student run NAME'): its folder, with its parent when the folder is
    only called 'student' or 'run' (the demo's layout), so the header never reads 'student student'."""
    run_dir = Path(run_dir).resolve()
    if run_dir.name.lower() in {"student", "run"} and run_dir.parent.name:
        return f"{run_dir.parent.name}/{run_dir.name}"
    return run_dir.name or str(run_dir)


def create_app(run_dir: str | os.PathLike, teacher: str | os.PathLike | Callable | None = None,
               max_upload_mb: float = 200, *, teacher_arch: str | None = None, device: str = "cpu",
               examples_cache: str | os.PathLike | None = None, max_frames: int = 2000,
               predictor: Any = None, compile: bool = False, precision: str = "fp32") -> FastAPI:
    """Build the viewer app for a student run directory (and optionally a teacher checkpoint or callable).

    `predictor` replaces the `echodfkd.stream.Predictor` built from `run_dir` (for tests and embedding);
    otherwise `compile` and `precision` choose its engine (see `Predictor`).
    Uploads live only in a private 0700 temporary folder, emptied after each request and removed at shutdown.
    """
    run_dir = Path(run_dir)
    predictor = predictor if predictor is not None else _load_predictor(run_dir, device, compile, precision)
    analyser = Analyser(predictor, _load_teacher(teacher, teacher_arch, device), streams=_shared_streams(predictor))
    private = PrivateFolder()
    atexit.register(private.cleanup)  # also when the server dies without a clean lifespan shutdown
    examples = ExampleStore(examples_cache)
    limit = int(max_upload_mb * MB)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        yield
        private.cleanup()
        if analyser.streams is not None:
            analyser.streams.shutdown()

    app = FastAPI(title="EchoDFKD viewer", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None,
                  default_response_class=StrictJSONResponse)
    app.state.private, app.state.analyser, app.state.examples = private, analyser, examples
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.middleware("http")
    async def security_headers(request: Request, call_next):
        response = await call_next(request)
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Cache-Control"] = "no-store"
        return response

    @app.exception_handler(UploadRejected)
    async def rejected(_request: Request, exc: UploadRejected) -> JSONResponse:
        return _error(exc.status, str(exc))

    @app.exception_handler(EchoDFKDError)
    async def known_error(_request: Request, exc: EchoDFKDError) -> JSONResponse:
        return _error(400, str(exc))

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    @app.get("/api/info")
    async def info() -> dict:
        cfg = getattr(analyser.predictor, "config", None) or {}
        return {"model": model_label(run_dir),
                "config": {k: cfg[k] for k in ("blocks", "layers", "params") if k in cfg},
                "thresholds": analyser.thresholds(), "teacher": analyser.teacher is not None,
                "max_upload_mb": max_upload_mb, "max_frames": max_frames, "examples": examples.listing()}

    @app.post("/api/analyze")
    async def analyze(request: Request) -> JSONResponse:
        folder = private.request_dir()
        try:
            path, name = await receive_upload(request.stream(), request.headers.get("content-type"),
                                              request.headers.get("x-filename"),
                                              request.headers.get("content-length"), folder, limit)
            frames, fps, conversion = await run_in_threadpool(decode_upload, path, name, max_frames)
            private.discard(folder)  # the decoded frames are in memory; nothing stays on disk
            result = await run_in_threadpool(analyser.analyse, frames, fps, name)
            if conversion:
                add_conversion(result, conversion)
        except (UploadRejected, EchoDFKDError):
            raise
        except Exception as exc:  # a bug, not the user's file: say so plainly, log the traceback
            log.exception("analysis failed")
            return _error(500, f"Internal error while analysing the clip ({type(exc).__name__}: {exc}).")
        finally:
            private.discard(folder)
        return StrictJSONResponse(result)

    @app.get("/api/examples")
    async def example_list() -> list:
        return examples.listing()

    @app.post("/api/examples/{name}")
    async def example(name: str) -> JSONResponse:
        frames, fps, file_name, truth = await run_in_threadpool(examples.load, name)
        result = await run_in_threadpool(analyser.analyse, frames, fps, file_name)
        result["truth"] = truth
        return StrictJSONResponse(result)

    return app
