"""Standalone server: the same Gradio UI and REST router as inside the WebUI, on FastAPI + uvicorn.

`python -m easyphoto serve` runs it. The diffusion backend for standalone use arrives with its issues; until then
the tabs that need it say what is missing.
"""


import errno
import importlib.util
import json
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from easyphoto import __version__
from easyphoto.context import AppContext
from easyphoto.errors import EasyPhotoError

# A hidden UI event that answers the version through gradio's queue: `serve --smoke` calls it to prove that the
# queue runs (it does only once the app's lifespan has started it), which /health alone cannot show.
HEALTH_EVENT = "easyphoto_health"
DOCS_ASSETS = "/docs/static"


TOKEN_COOKIE = "easyphoto_token"
LOOPBACK_NAMES = ("localhost", "localhost.localdomain")


def is_loopback(host: str | None) -> bool:
    """True when a server bound to `host` is reachable from this machine only."""
    import ipaddress

    name = (host or "").strip().strip("[]").lower()
    if name in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False  # a host name or 0.0.0.0-style wildcard: other machines may reach it


def api_exposure(host: str, token: str | None):
    """Standalone: beyond loopback without --token, the API answers only /health (403 naming the flag)."""
    from easyphoto.api.routes import Exposure

    if token or is_loopback(host):
        return Exposure()
    return Exposure(refuse=True, hint=f"The server listens on {host}: start it with --token T and send "
                                      "'Authorization: Bearer T' (or open /?token=T once in the browser).")


class TokenGate:
    """ASGI middleware for `serve --token T`: every HTTP request and websocket (the UI, gradio's queue, the API,
    /docs) needs the token, as `Authorization: Bearer T` or as the cookie a browser gets by opening /?token=T
    once (then redirected to the same page without the token in its address)."""

    def __init__(self, app, token: str, internal_token: str | None = None):
        import hashlib

        self.app = app
        self.token = token
        # gradio 3 runs each queued event by POSTing to its own /api/predict with "Bearer <its queue token>"
        # (a random secret of that gradio app): that request must pass as well.
        self.bearers = [f"Bearer {t}" for t in (token, internal_token) if t]
        # The cookie holds a digest, so the token itself is neither stored by the browser nor needs quoting.
        self.cookie = hashlib.sha256(f"easyphoto-ui:{token}".encode()).hexdigest()

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        from starlette.requests import HTTPConnection

        conn = HTTPConnection(scope)
        bearer = conn.headers.get("authorization", "")
        if any(secrets.compare_digest(bearer, b) for b in self.bearers) or secrets.compare_digest(
            conn.cookies.get(TOKEN_COOKIE, ""), self.cookie
        ):
            return await self.app(scope, receive, send)
        if scope["type"] == "http" and secrets.compare_digest(conn.query_params.get("token", ""), self.token):
            return await self._remember(conn, scope, receive, send)
        if scope["type"] == "websocket":
            return await send({"type": "websocket.close", "code": 1008})
        return await self._deny(scope, receive, send)

    async def _remember(self, conn, scope, receive, send):
        """Set the cookie and redirect to the same URL without the token."""
        from urllib.parse import urlencode

        from starlette.responses import RedirectResponse

        rest = urlencode([(k, v) for k, v in conn.query_params.multi_items() if k != "token"])
        response = RedirectResponse(scope.get("root_path", "") + scope["path"] + (f"?{rest}" if rest else ""),
                                    status_code=303)
        response.set_cookie(TOKEN_COOKIE, self.cookie, httponly=True, samesite="strict", path="/")
        await response(scope, receive, send)

    async def _deny(self, scope, receive, send):
        from starlette.responses import JSONResponse

        body = {"error": "Unauthorized", "phase": "auth", "message": "This EasyPhoto server needs its token.",
                "hint": "Open /?token=YOUR_TOKEN once in the browser, or send 'Authorization: Bearer YOUR_TOKEN'."}
        await JSONResponse(body, status_code=401, headers={"WWW-Authenticate": "Bearer"})(scope, receive, send)


def create_app(ctx: AppContext, *, with_ui: bool = True, token: str | None = None, host: str = "127.0.0.1"):
    """The FastAPI app: API, offline docs and (with_ui) the Gradio UI at "/". `host` is where it will listen:
    beyond loopback without a token the API refuses everything but /health."""
    from fastapi import FastAPI

    from easyphoto import api

    swagger_dir = swagger_ui_dir()
    # FastAPI's own /docs loads Swagger UI from a CDN (a blank page offline); ours serves it from the package.
    app = FastAPI(title="EasyPhoto", version=__version__, docs_url=None if swagger_dir else "/docs")
    # Routes first: the Gradio app is mounted at "/" and would otherwise catch /easyphoto/v1 and /docs too.
    exposure = api_exposure(host, token)
    api.install(app, ctx, exposure=exposure)
    from easyphoto.api.sdapi_routes import install_sdapi  # the WebUI serves its own /sdapi/v1: standalone only

    install_sdapi(app, ctx, exposure)
    if swagger_dir:
        install_local_docs(app, swagger_dir)
    if with_ui:
        import gradio as gr

        from easyphoto.ui import build_ui

        blocks = build_ui(ctx)
        add_health_event(gr, blocks)
        blocks.queue()  # progress streaming needs the queue (on by default in gradio 4, off in 3.41)
        # Both gradio 3 (a startup handler) and 4 (a wrapped lifespan) start the queue from the parent app's
        # lifespan, so uvicorn must run with lifespan on.
        app = gr.mount_gradio_app(app, blocks, path="/")
    if token:
        # Middleware of the outer app: it covers the mounted Gradio app (page, assets, queue) and the API alike.
        app.add_middleware(TokenGate, token=token, internal_token=_gradio_queue_token(app))
    return app


def _gradio_queue_token(app) -> str | None:
    """gradio 3's per-app queue secret (see TokenGate); None on gradio 4, which runs events in-process."""
    for route in app.routes:
        token = getattr(getattr(route, "app", None), "queue_token", None)
        if isinstance(token, str) and token:
            return token
    return None


def add_health_event(gr, blocks) -> None:
    """Reopen the built UI to add an invisible button whose click returns the version, under a stable api_name."""
    with blocks:
        trigger = gr.Button(visible=False)
        answer = gr.Textbox(visible=False)
        trigger.click(lambda: __version__, inputs=None, outputs=answer, api_name=HEALTH_EVENT, queue=True)


def swagger_ui_dir() -> Path | None:
    """Swagger UI's dist files from the `swagger-ui-py` package (Swagger UI 5, which reads the OpenAPI 3.1 that
    FastAPI >= 0.99 writes), found without importing the package's own web-framework glue; None if absent."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.origin:
        return None
    static = Path(spec.origin).parent / "static"
    return static if (static / "swagger-ui-bundle.js").is_file() else None


def install_local_docs(app, static_dir: Path) -> None:
    from fastapi import Request
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.staticfiles import StaticFiles

    app.mount(DOCS_ASSETS, StaticFiles(directory=str(static_dir)), name="swagger-ui")

    @app.get("/docs", include_in_schema=False)
    def docs(request: Request):
        root = request.scope.get("root_path", "").rstrip("/")  # behind a proxy prefix, as FastAPI's own page does
        return get_swagger_ui_html(
            openapi_url=root + app.openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{root}{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{root}{DOCS_ASSETS}/favicon-32x32.png",
        )


def _address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _shutdown_options(uvicorn) -> dict:
    """An open browser tab keeps gradio's event stream open, and uvicorn waits for every connection on Ctrl-C or
    SIGTERM: bound that wait (uvicorn >= 0.24; older ones have no such option)."""
    import inspect

    accepted = inspect.signature(uvicorn.Config).parameters
    return {"timeout_graceful_shutdown": 5} if "timeout_graceful_shutdown" in accepted else {}


def _bind(host: str, port: int) -> socket.socket:
    """Bind before starting uvicorn so `--port 0` can report the port the OS chose, and a busy port is one line."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise EasyPhotoError(f"{_address(host, port)} is already in use.", phase="serve",
                                 hint="Stop the program using it, or choose another port with --port "
                                      "(--port 0 picks a free one).") from None
        raise EasyPhotoError(f"Cannot listen on {_address(host, port)}: {exc.strerror or exc}.", phase="serve",
                             hint="Choose another address with --host or another port with --port.") from None
    # Listening from here on: a client that connects as soon as "serving on" is printed waits in the backlog
    # until uvicorn has started, instead of being refused (uvicorn listens only after the app's startup).
    sock.listen(2048)
    return sock


def session_token(host: str, token: str | None) -> tuple[str | None, bool]:
    """(token to require, generated?). Beyond loopback a server without --token would let anyone on the network
    read a person's photos or start work: it gets a random token for this run, printed at start (as Jupyter does)."""
    if token or is_loopback(host):
        return token, False
    return secrets.token_urlsafe(18), True


def serve(
    ctx: AppContext,
    *,
    host: str = "127.0.0.1",
    port: int = 7861,
    with_ui: bool = True,
    token: str | None = None,
    smoke: bool = False,
    smoke_timeout: float = 60.0,
) -> int:
    """Run until interrupted. With `smoke`: start, ask /health, run one queued UI event, print and stop; exit
    code 0 when both answered, 1 (with one line on stderr) when not."""
    import uvicorn

    token, generated = session_token(host, token)
    app = create_app(ctx, with_ui=with_ui, token=token, host=host)
    sock = _bind(host, port)
    bound_port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on", **_shutdown_options(uvicorn)))
    url = f"http://{_address(host, bound_port)}"
    print(f"EasyPhoto {__version__} serving on {url} (API {url}/easyphoto/v1, docs {url}/docs)", flush=True)
    if generated:
        print(f"{host} is reachable from other machines, so this server needs a token (none was given with --token): "
              f"open {url}/?token={token} once in the browser, and send 'Authorization: Bearer {token}' to the API.",
              flush=True)
    if not smoke:
        server.run(sockets=[sock])
        return 0 if server.started else 1  # not started: uvicorn has logged why (e.g. a failed app startup)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    failure = None
    try:
        health = _smoke(server, thread, url, token, with_ui, smoke_timeout)
    except SmokeFailure as exc:
        failure = exc
    finally:
        _stop(server, thread)
    if failure is not None:  # printed after the stop so that the verdict is the last line
        print(f"error: [serve] smoke check failed: {failure}", file=sys.stderr, flush=True)
        return 1
    print(json.dumps(health), flush=True)
    return 0 if health.get("version") == __version__ else 1


def _stop(server, thread: threading.Thread, grace: float = 5.0) -> None:
    """Graceful stop, then a forced one: a queue request abandoned by a failed check never finishes on its own,
    and uvicorn would wait for it."""
    import logging

    server.should_exit = True
    thread.join(timeout=grace)
    if not thread.is_alive():
        return
    # Forcing cancels that request; the CancelledError traceback uvicorn would log is our doing, not news.
    log = logging.getLogger("uvicorn.error")
    level = log.level
    log.setLevel(logging.CRITICAL)
    try:
        server.force_exit = True
        thread.join(timeout=grace)
    finally:
        log.setLevel(level)


class SmokeFailure(Exception):
    pass


def _smoke(server, thread: threading.Thread, url: str, token: str | None, with_ui: bool, timeout: float) -> dict:
    """The /health body once the server is up and, with the UI, the hidden event has answered; else SmokeFailure."""
    _wait_started(server, thread, timeout)
    health = _get_health(f"{url}/easyphoto/v1/health", token)
    if with_ui:
        print(f"UI queue: /{HEALTH_EVENT} answered {probe_ui_queue(url, timeout, token)!r}", flush=True)
    return health


def _wait_started(server, thread: threading.Thread, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive():
            raise SmokeFailure("the server stopped during startup (its log above says why)")
        if time.monotonic() > deadline:
            raise SmokeFailure(f"the server did not start within {timeout:.0f} s")
        time.sleep(0.05)


def _get_health(url: str, token: str | None) -> dict:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as response:
            return json.loads(response.read())  # loopback only
    except OSError as exc:
        raise SmokeFailure(f"GET {url}: {exc}") from None


# Runs in a child process: gradio_client works on non-daemon threads that a hung queue would keep alive past our
# exit, and a child can simply be killed at the deadline. Telemetry off: the check must never leave the machine.
# With `serve --token T` the token goes in as `hf_token`: both gradio_client versions send it as
# "Authorization: Bearer T" on every request and on the websocket, which is what TokenGate accepts.
_PROBE = """
import sys
from gradio_client import Client
print(Client(sys.argv[1], hf_token=sys.argv[3] or None, verbose=False).predict(api_name="/" + sys.argv[2]))
"""


def probe_ui_queue(url: str, timeout: float, token: str | None = None) -> str:
    """Call the hidden health event through gradio's own client protocol (websocket queue in gradio 3, SSE in 4);
    its answer, or SmokeFailure when it fails or does not complete within `timeout` seconds."""
    env = {**os.environ, "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    try:
        done = subprocess.run([sys.executable, "-c", _PROBE, f"{url}/", HEALTH_EVENT, token or ""], capture_output=True,
                              text=True, timeout=timeout, env=env, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise SmokeFailure(f"the UI event /{HEALTH_EVENT} did not complete within {timeout:.0f} s "
                           "(gradio's queue is not running)") from None
    lines = (done.stdout if done.returncode == 0 else done.stderr).strip().splitlines()
    if done.returncode != 0:
        raise SmokeFailure(f"the UI event /{HEALTH_EVENT} failed: {lines[-1] if lines else done.returncode}")
    if not lines or lines[-1] != __version__:
        raise SmokeFailure(f"the UI event /{HEALTH_EVENT} answered {lines[-1] if lines else 'nothing'!r}, "
                           f"expected {__version__!r}")
    return lines[-1]
