"""Standalone server: the same Gradio UI and REST router as inside the WebUI, on FastAPI + uvicorn.

`python -m easyphoto serve` runs it. The diffusion backend for standalone use arrives with its issues; until then
the tabs that need it say what is missing.
"""


import json
import secrets
import socket
import threading
import time
import urllib.request
from collections.abc import Sequence

from easyphoto import __version__
from easyphoto.context import AppContext


def token_dependencies(token: str | None) -> list:
    """Optional bearer token for the standalone API (the WebUI uses its own --api-auth instead)."""
    if not token:
        return []
    from fastapi import Depends, HTTPException, Request, status

    def check(request: Request) -> None:
        given = request.headers.get("authorization", "")
        if not secrets.compare_digest(given, f"Bearer {token}"):
            raise HTTPException(status.HTTP_401_UNAUTHORIZED, "Missing or wrong API token",
                                headers={"WWW-Authenticate": "Bearer"})

    return [Depends(check)]


def create_app(ctx: AppContext, *, with_ui: bool = True, token: str | None = None):
    from fastapi import FastAPI

    from easyphoto import api

    app = FastAPI(title="EasyPhoto", version=__version__)
    # Routes first: the Gradio app is mounted at "/" and would otherwise catch /easyphoto/v1 too.
    api.install(app, ctx, dependencies=token_dependencies(token))
    if with_ui:
        import gradio as gr

        from easyphoto.ui import build_ui

        blocks = build_ui(ctx)
        blocks.queue()  # progress streaming needs the queue (on by default in gradio 4, off in 3.41)
        app = gr.mount_gradio_app(app, blocks, path="/")
    return app


def _bind(host: str, port: int) -> socket.socket:
    """Bind before starting uvicorn so `--port 0` can report the port the OS chose."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


def serve(
    ctx: AppContext,
    *,
    host: str = "127.0.0.1",
    port: int = 7861,
    with_ui: bool = True,
    token: str | None = None,
    smoke: bool = False,
) -> int:
    """Run until interrupted; with `smoke`, start, ask /health once, print it and stop (exit code 0 if healthy)."""
    import uvicorn

    app = create_app(ctx, with_ui=with_ui, token=token)
    sock = _bind(host, port)
    bound_port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    url = f"http://{host if ':' not in host else f'[{host}]'}:{bound_port}"
    print(f"EasyPhoto {__version__} serving on {url} (API {url}/easyphoto/v1, docs {url}/docs)", flush=True)
    if not smoke:
        server.run(sockets=[sock])
        return 0
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        health = _wait_for_health(server, f"{url}/easyphoto/v1/health", token)
        print(json.dumps(health), flush=True)
        return 0 if health.get("version") == __version__ else 1
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _wait_for_health(server, url: str, token: str | None, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the server did not start within {timeout:.0f} s")
        time.sleep(0.05)
    headers: Sequence = [("Authorization", f"Bearer {token}")] if token else []
    request = urllib.request.Request(url, headers=dict(headers))
    with urllib.request.urlopen(request, timeout=10) as response:  # loopback only
        return json.loads(response.read())
