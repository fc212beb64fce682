"""``airmix view RUNDIR`` and ``airmix run --live``: serve a run's live view.

A Starlette app served by uvicorn, bound to the loopback by default and read-only:

``GET /``                  the page (a jinja2 template)
``GET /static/...``        its script and style, and ``plotly.min.js`` from the
                           installed ``plotly`` package (nothing is fetched at run time)
``GET /api/snapshot``      the current snapshot (:func:`orchestrator.live.snapshot.read_snapshot`)
``WS  /ws``                pushes ``{"type": "snapshot", "data": ...}`` at once and then
                           whenever the run directory changes (polled every
                           :data:`POLL_S`); accepts ``{"type": "ping"}`` (answered with
                           ``pong``) and ``{"type": "refresh"}``

Anything else is a clear error: unknown paths get 404 and other methods 405, both as
JSON; a WebSocket message that is not a small JSON object with a known ``type`` gets
``{"type": "error", "error": ...}`` and the socket stays open; one larger than
:data:`MAX_MESSAGE_BYTES` is answered with an error and closed (1009), and frames larger
than :data:`MAX_FRAME_BYTES` are refused by uvicorn itself. The server only reads the
run directory, in its own process when started by ``airmix run --live``, so nothing a
client sends can disturb the run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any

import plotly
import uvicorn
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketDisconnect

from orchestrator.live.snapshot import change_token, read_snapshot

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
#: how often the run directory is checked for changes, seconds
POLL_S = 0.25
#: largest WebSocket message the page may send (its messages are a few bytes)
MAX_MESSAGE_BYTES = 1024
#: largest WebSocket frame uvicorn accepts at all
MAX_FRAME_BYTES = 4096
PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
STATIC_DIR = Path(__file__).parent / "static"
NO_STORE = {"Cache-Control": "no-store"}

log = logging.getLogger(__name__)
_templates = Environment(
    loader=PackageLoader("orchestrator.live", "templates"), autoescape=select_autoescape()
)


def _json_error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=NO_STORE)


def _parse_client_message(text: str) -> tuple[str | None, str | None]:
    """``(type, None)`` for a valid page message, ``(None, reason)`` otherwise."""
    try:
        message = json.loads(text)
    except ValueError:
        return None, "message is not JSON"
    if not isinstance(message, dict):
        return None, "message must be a JSON object"
    kind = message.get("type")
    if kind not in ("ping", "refresh"):
        return None, f"unknown message type {kind!r}; expected 'ping' or 'refresh'"
    return kind, None


def create_app(run_path: str | Path) -> Starlette:
    """The live view of the run directory ``run_path`` as an ASGI app."""
    run_path = Path(run_path).resolve()
    if not run_path.is_dir():
        raise FileNotFoundError(f"no run directory at {run_path}")

    async def page(request: Request) -> Response:
        html = _templates.get_template("live.html").render(run_name=run_path.name)
        return HTMLResponse(html, headers=NO_STORE)

    async def snapshot(request: Request) -> Response:
        return JSONResponse(read_snapshot(run_path), headers=NO_STORE)

    async def plotly_js(request: Request) -> Response:
        return FileResponse(PLOTLY_JS, media_type="text/javascript")

    async def websocket(socket: WebSocket) -> None:
        await socket.accept()

        async def send_snapshot() -> None:
            await socket.send_json({"type": "snapshot", "data": read_snapshot(run_path)})

        async def push_changes() -> None:
            token = None
            while True:
                current = change_token(run_path)
                if current != token:
                    token = current
                    await send_snapshot()
                await asyncio.sleep(POLL_S)

        pusher = asyncio.create_task(push_changes())
        try:
            while True:
                message = await socket.receive()
                if message["type"] == "websocket.disconnect":
                    break
                text = message.get("text")
                if text is None:
                    await socket.send_json(
                        {"type": "error", "error": "binary messages are refused"}
                    )
                    continue
                if len(text.encode()) > MAX_MESSAGE_BYTES:
                    await socket.send_json(
                        {"type": "error", "error": f"message over {MAX_MESSAGE_BYTES} bytes"}
                    )
                    await socket.close(code=1009)
                    break
                kind, reason = _parse_client_message(text)
                if kind == "ping":
                    await socket.send_json({"type": "pong"})
                elif kind == "refresh":
                    await send_snapshot()
                else:
                    await socket.send_json({"type": "error", "error": reason})
        except WebSocketDisconnect:
            pass
        finally:
            pusher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await pusher

    async def http_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, HTTPException)
        if error.status_code == 404:
            return _json_error(404, f"unknown path {request.url.path}")
        if error.status_code == 405:
            return _json_error(405, f"method {request.method} not allowed (read-only view)")
        return _json_error(error.status_code, str(error.detail))

    routes = [
        Route("/", page),
        Route("/api/snapshot", snapshot),
        Route("/static/plotly.min.js", plotly_js),
        Mount("/static", StaticFiles(directory=STATIC_DIR)),
        WebSocketRoute("/ws", websocket),
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: http_error})


async def _watch_parent(server: uvicorn.Server, parent_pid: int) -> None:
    """Stop ``server`` once the process ``parent_pid`` (the run) has gone."""
    while os.getppid() == parent_pid:
        await asyncio.sleep(0.5)
    server.should_exit = True


def serve(
    run_path: str | Path,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    parent_pid: int | None = None,
) -> None:
    """Serve the live view of ``run_path`` at ``http://host:port/`` until interrupted
    (or, with ``parent_pid``, until that process exits)."""
    app = create_app(run_path)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        ws_max_size=MAX_FRAME_BYTES,
        lifespan="off",
    )
    server = uvicorn.Server(config)

    async def main() -> None:
        watcher = None
        if parent_pid is not None:
            watcher = asyncio.create_task(_watch_parent(server, parent_pid))
        await server.serve()
        if watcher is not None:
            watcher.cancel()

    asyncio.run(main())


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, help="run directory (running or finished)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="TCP port (default 8765)")
    parser.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help="address to bind (default the loopback; anything else exposes the view)",
    )
    parser.add_argument("--parent-pid", type=int, help=argparse.SUPPRESS)


def main(args: argparse.Namespace) -> int:
    """``airmix view RUNDIR``: serve the page until Ctrl-C."""
    if not args.run_dir.is_dir():
        print(f"airmix view: no run directory at {args.run_dir}", file=sys.stderr)
        return 2
    if not 0 <= args.port <= 65535:
        print(f"airmix view: --port must be 0-65535, got {args.port}", file=sys.stderr)
        return 2
    if args.parent_pid is None:
        print(f"live view of {args.run_dir} at http://{args.host}:{args.port}/ (Ctrl-C stops)")
        sys.stdout.flush()
    serve(args.run_dir, args.host, args.port, parent_pid=args.parent_pid)
    return 0


def start_live_process(run_path: Path, port: int, host: str = DEFAULT_HOST) -> Any:
    """Start the view of a running run in its own process (``airmix run --live``); it
    exits by itself when the run's process does. Returns the ``subprocess.Popen``."""
    import subprocess

    command = [
        sys.executable,
        "-m",
        "orchestrator.live",
        str(run_path),
        "--port",
        str(port),
        "--host",
        host,
        "--parent-pid",
        str(os.getpid()),
    ]
    return subprocess.Popen(command, stdin=subprocess.DEVNULL)
