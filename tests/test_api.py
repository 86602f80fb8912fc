"""The REST API of the standalone app through FastAPI's TestClient (same router as inside the WebUI)."""

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from easyphoto import __version__, api
from easyphoto.app import create_app
from easyphoto.context import standalone_context
from easyphoto.errors import IdentityNotFound


@pytest.fixture
def ctx(tmp_path):
    return standalone_context(tmp_path)


def test_health_reports_version_and_host(ctx):
    client = TestClient(create_app(ctx, with_ui=False))
    body = client.get("/easyphoto/v1/health").json()
    assert body == {"name": "EasyPhoto", "version": __version__, "api": "v1",
                    "host": {"flavour": "standalone", "version": __version__}, "offline": False}


def test_offline_flag_is_reported(tmp_path):
    client = TestClient(create_app(standalone_context(tmp_path, offline=True), with_ui=False))
    assert client.get("/easyphoto/v1/health").json()["offline"] is True


def test_models_route_lists_manifest_states(ctx):
    client = TestClient(create_app(ctx, with_ui=False))
    rows = client.get("/easyphoto/v1/models", params={"group": "controlnet"}).json()
    assert {r["id"] for r in rows} == {"controlnet-canny", "controlnet-openpose", "controlnet-tile", "controlnet-color",
                                          "controlnet-depth", "controlnet-seg"}
    assert all(r["state"] == "missing" and r["path"].startswith(str(ctx.paths.controlnet_dir)) for r in rows)


def test_openapi_schema_is_published(ctx):
    schema = TestClient(create_app(ctx, with_ui=False)).get("/openapi.json").json()
    assert "/easyphoto/v1/health" in schema["paths"] and "/easyphoto/v1/models" in schema["paths"]


def test_token_is_required_when_configured(ctx):
    client = TestClient(create_app(ctx, with_ui=False, token="s3cret"))
    assert client.get("/easyphoto/v1/health").status_code == 401
    assert client.get("/easyphoto/v1/health", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/easyphoto/v1/health", headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_install_is_idempotent_and_errors_become_json(ctx):
    app = FastAPI()
    assert api.install(app, ctx) is True
    assert api.install(app, ctx) is False
    routes = [(r.path, tuple(sorted(r.methods))) for r in app.routes if r.path.startswith(api.API_PREFIX)]
    assert len(routes) == len(set(routes)) and ("/easyphoto/v1/health", ("GET",)) in routes

    @app.get("/boom")
    def boom():
        raise IdentityNotFound("No identity named 'x'.", hint="Create it first.")

    response = TestClient(app).get("/boom")
    assert response.status_code == 404
    assert response.json() == {"error": "IdentityNotFound", "phase": "identity",
                               "message": "No identity named 'x'.", "hint": "Create it first."}


def test_standalone_app_with_ui_keeps_api_routes_reachable(ctx):
    pytest.importorskip("gradio", reason="the Python 3.10 check runs without gradio")
    client = TestClient(create_app(ctx, with_ui=True))
    assert client.get("/easyphoto/v1/health").status_code == 200
    assert client.get("/").status_code == 200  # the Gradio page


def test_token_protects_the_ui_as_well(ctx):
    """`serve --token T` covers the Gradio page: without the token 401; with the header, or the cookie a browser
    gets from opening /?token=T once, 200."""
    pytest.importorskip("gradio", reason="the Python 3.10 check runs without gradio")
    app = create_app(ctx, with_ui=True, token="s3cret")
    anonymous = TestClient(app)
    denied = anonymous.get("/")
    assert denied.status_code == 401 and "/?token=" in denied.json()["hint"]
    assert anonymous.get("/config").status_code == 401  # gradio's own routes too, not only the page
    assert anonymous.get("/?token=wrong").status_code == 401
    assert TestClient(app).get("/", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    browser = TestClient(app)
    first = browser.get("/?token=s3cret", follow_redirects=False)
    assert first.status_code == 303 and first.headers["location"] == "/" and "s3cret" not in first.headers["set-cookie"]
    assert "httponly" in first.headers["set-cookie"].lower() and "samesite=strict" in first.headers["set-cookie"].lower()
    assert browser.get("/?token=s3cret").status_code == 200  # redirect followed, the cookie kept
    assert browser.get("/").status_code == 200 and browser.get("/easyphoto/v1/health").status_code == 200


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.20", "::", "my-server.lan"])
def test_beyond_loopback_without_token_only_health_answers(tmp_path, host):
    client = TestClient(create_app(standalone_context(tmp_path), with_ui=False, host=host))
    assert client.get("/easyphoto/v1/health").status_code == 200
    for method, path in (("POST", "/easyphoto/v1/identities"), ("GET", "/easyphoto/v1/identities"),
                         ("DELETE", "/easyphoto/v1/identities/x"), ("POST", "/easyphoto/v1/models/fetch")):
        response = client.request(method, path, json={"id": "ann"})
        assert response.status_code == 403, (method, path)
        assert "--token" in response.json()["hint"] and response.json()["phase"] == "auth"
    assert not (tmp_path / "easyphoto" / "identities" / "ann").exists()


@pytest.mark.parametrize("host, token", [("127.0.0.1", None), ("localhost", None), ("::1", None),
                                         ("0.0.0.0", "s3cret")])
def test_loopback_or_a_token_serves_the_whole_api(tmp_path, host, token):
    client = TestClient(create_app(standalone_context(tmp_path), with_ui=False, host=host, token=token))
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    created = client.post("/easyphoto/v1/identities", json={"id": "ann"}, headers=headers)
    assert created.status_code == 201
