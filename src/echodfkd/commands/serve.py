"""`echodfkd serve`: the browser viewer (upload a clip, watch the mask, the area curve, ED/ES, EF, the alert)."""

from __future__ import annotations

import argparse
import errno
import ipaddress
import socket
import sys

from echodfkd.commands import _flags

NAME = "serve"
HELP = "open the browser viewer on a student run (local web page)"
DESCRIPTION = (
    "Start a local web page where you upload an AVI/MP4 clip (or pick a bundled phantom example) and see the "
    "student's mask playing over it, the LV area curve with every ED/ES frame, an EF estimate, the "
    "unusual-input alert and the per-frame latency; optionally the teacher side by side. Needs the optional "
    "extra: pip install 'echodfkd[viewer]'. Binds to 127.0.0.1 unless told otherwise."
)
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `echodfkd serve`."""
    _flags.add_student(parser)
    _flags.add_teacher(parser, help="optional teacher checkpoint shown side by side")
    _flags.add_teacher_arch(parser)
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to bind (loopback keeps the page private to this computer)")
    parser.add_argument("--port", type=_flags.int_in(1, 65535), default=DEFAULT_PORT, help="TCP port")
    parser.add_argument("--max-upload-mb", type=_flags.positive_float, default=200.0,
                        help="largest accepted upload, in MB")
    _flags.add_device(parser, help="torch device for the models: cpu, cuda, cuda:N, mps, auto")
    _flags.add_precision(parser, help="student engine precision (bf16: faster on CPUs with AMX/AVX512-BF16)")
    _flags.add_compile(parser, help="CPU: run the student's ahead-of-time compiled engine (built once and cached; "
                       "needs a C++ compiler; see `predict --help`)")


def is_loopback(host: str) -> bool:
    """True when `host` only accepts connections from this computer."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port, bound before anything is printed (OSError when it cannot be)."""
    info = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    sock = socket.socket(info[0], socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn: TIME_WAIT leftovers are fine
        sock.bind(info[4])
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def run(args: argparse.Namespace) -> int:
    """Load the models, then serve until interrupted."""
    from echodfkd.errors import EchoDFKDError

    try:
        import uvicorn
    except ImportError:
        raise EchoDFKDError("the viewer needs its optional extra: pip install 'echodfkd[viewer]'") from None
    from echodfkd.viewer import create_app

    if not is_loopback(args.host):
        print(f"echodfkd serve: warning: binding to {args.host} makes the viewer (and uploads) reachable from "
              "other computers; it has no login. Use --host 127.0.0.1 unless you mean it.", file=sys.stderr)
    try:  # the port first: a busy one is one line, before the models load and before any URL is shown
        sock = bind(args.host, args.port)
    except OSError as exc:  # refused before any work: exit 2 like every refused input (docs/cli.md)
        if exc.errno == errno.EADDRINUSE:
            raise EchoDFKDError(f"port {args.port} is in use") from None
        raise EchoDFKDError(f"cannot listen on {args.host}:{args.port} ({exc.strerror or exc})") from None
    with sock:
        app = create_app(args.student, teacher=args.teacher, max_upload_mb=args.max_upload_mb,
                         teacher_arch=args.teacher_arch, device=args.device, compile=args.compile,
                         precision=args.precision)
        shown = f"[{args.host}]" if ":" in args.host else args.host
        print(f"echodfkd viewer on http://{shown}:{args.port}/  (Ctrl+C to stop)", file=sys.stderr)
        uvicorn.Server(uvicorn.Config(app, log_level="warning")).run(sockets=[sock])
    return 0
