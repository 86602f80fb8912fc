"""The standalone server beyond its REST routes: offline /docs, the busy-port message, global options after the
command, and `serve --smoke` failing when gradio's queue never runs (the lifespan="off" hang of issue 10)."""

import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from easyphoto.app import HEALTH_EVENT, create_app, serve
from easyphoto.cli import build_parser
from easyphoto.context import standalone_context

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "easyphoto", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("with_ui", [False, True])
def test_docs_page_and_its_assets_are_served_locally(tmp_path, with_ui):
    if with_ui:
        pytest.importorskip("gradio")
    client = TestClient(create_app(standalone_context(tmp_path, offline=True), with_ui=with_ui))
    page = client.get("/docs")
    assert page.status_code == 200 and "swagger-ui" in page.text
    assets = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert any(a.endswith("swagger-ui-bundle.js") for a in assets) and any(a.endswith(".css") for a in assets)
    for url in assets:
        assert url.startswith("/"), f"{url} is not served by the app itself"
        response = client.get(url)
        assert response.status_code == 200 and len(response.content) > 0, url
    assert "/easyphoto/v1/health" in client.get("/openapi.json").json()["paths"]


@pytest.mark.parametrize("argv, expected", [
    (["--data-dir", "A", "serve"], ("A", None, False)),
    (["serve", "--data-dir", "B", "--offline"], ("B", None, True)),
    (["--data-dir", "A", "--models-dir", "M", "serve", "--data-dir", "B"], ("B", "M", False)),
    (["models", "list", "--models-dir", "M", "--offline"], (None, "M", True)),
    (["--offline", "models", "--data-dir", "C", "verify"], ("C", None, True)),
    (["info"], (None, None, False)),
])
def test_global_options_are_accepted_before_and_after_the_command(argv, expected):
    args = build_parser().parse_args(argv)
    assert (args.data_dir, args.models_dir, args.offline) == expected


def test_data_dir_after_the_command_is_used(tmp_path):
    out = run_cli("info", "--data-dir", str(tmp_path), "--offline")
    assert out.returncode == 0, out.stderr
    assert f'"data_root": "{tmp_path / "easyphoto"}"' in out.stdout and '"offline": true' in out.stdout


def test_busy_port_is_one_line_naming_the_address_and_the_flag(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = run_cli("serve", "--data-dir", str(tmp_path), "--port", str(port), "--no-ui", "--smoke")
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1, out.stderr
    assert f"127.0.0.1:{port} is already in use" in lines[0] and "--port" in lines[0]


def test_the_bound_port_accepts_connections_before_the_server_has_started():
    """"serving on URL" is printed before the app's startup (job recovery) has run: a client that connects at once
    must wait in the backlog, not be refused (it was, under load: the kill -9 restart test saw ECONNREFUSED)."""
    from easyphoto.app import _bind

    sock = _bind("127.0.0.1", 0)
    try:
        client = socket.create_connection(sock.getsockname()[:2], timeout=5)
        client.close()
    finally:
        sock.close()


def test_smoke_fails_in_one_line_when_the_ui_queue_never_runs(tmp_path, monkeypatch, capsys):
    """The reported bug, reproduced: without the app lifespan gradio's queue never starts and UI events hang."""
    pytest.importorskip("gradio")
    import uvicorn

    config = uvicorn.Config
    monkeypatch.setattr(uvicorn, "Config", lambda app, **kw: config(app, **{**kw, "lifespan": "off"}))
    code = serve(standalone_context(tmp_path, offline=True), port=0, smoke=True, smoke_timeout=10)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert err[-1].startswith("error: [serve] smoke check failed: ")
    assert f"/{HEALTH_EVENT} did not complete within 10 s" in err[-1]


def test_smoke_with_a_token_runs_the_ui_queue_through_the_token_gate(tmp_path, capsys):
    """The gate covers gradio's queue too; gradio 3 runs each queued event by calling itself over HTTP, which
    must still pass (a gate that refused it would hang every button of the UI)."""
    pytest.importorskip("gradio")
    code = serve(standalone_context(tmp_path, offline=True), port=0, smoke=True, token="s3cret", smoke_timeout=60)
    out = capsys.readouterr()
    assert code == 0, out.err
    assert "answered '" in out.out


def test_beyond_loopback_without_a_token_the_server_makes_one_and_says_how_to_use_it(tmp_path, capsys):
    """Listening on every interface without --token must not leave the UI or the API open to the network."""
    from easyphoto.app import serve, session_token

    assert session_token("127.0.0.1", None) == (None, False) and session_token("0.0.0.0", "t") == ("t", False)
    token, generated = session_token("0.0.0.0", None)
    assert generated and len(token) >= 20 and session_token("0.0.0.0", None)[0] != token
    code = serve(standalone_context(tmp_path, offline=True), host="0.0.0.0", port=0, with_ui=False, smoke=True)
    out = capsys.readouterr().out
    assert code == 0 and "/?token=" in out and "Authorization: Bearer " in out
    printed = out.split("/?token=", 1)[1].split()[0]
    assert f"Bearer {printed}'" in out  # the same token for the browser and the API
