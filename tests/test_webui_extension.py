"""The extension as the WebUI sees it, through the host double (tests/host), in the A1111 and Forge flavours."""

import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from easyphoto import __version__

ROOT = Path(__file__).resolve().parents[1]
FLAVOURS = ["a1111", "forge"]


@pytest.fixture(params=FLAVOURS)
def flavour(request):
    return request.param


def start(factory, flavour, **kw):
    # strict_sys_path: the repo root is off sys.path while the host runs, as in a real WebUI, so an import of our
    # package that only works because pytest put the repo on sys.path fails here as it would for users.
    return factory(flavour, extensions={"easyphoto": ROOT}, strict_sys_path=True, **kw)


def our_callbacks(host, category):
    from modules import script_callbacks

    return [c for c in script_callbacks.callback_map[f"callbacks_{category}"] if "easyphoto" in c.script]


def our_routes(app):
    return sorted((r.path, tuple(sorted(r.methods))) for r in app.routes if r.path.startswith("/easyphoto/"))


def assert_each_route_once(app):
    routes = our_routes(app)
    assert len(routes) == len(set(routes)) and ("/easyphoto/v1/health", ("GET",)) in routes
    return routes


def test_loads_without_errors_and_registers_once(webui_host_factory, flavour):
    host = start(webui_host_factory, flavour)
    assert [e for e in host.errors if "easyphoto" in str(e).lower()] == []
    for category in ("ui_tabs", "ui_settings", "app_started"):
        assert len(our_callbacks(host, category)) == 1, category


def test_tab_is_registered_as_blocks_title_id(webui_host_factory, flavour):
    import gradio as gr

    host = start(webui_host_factory, flavour)
    tabs = [t for t in host.create_ui() if t[1] == "EasyPhoto"]
    assert len(tabs) == 1
    blocks, title, elem_id = tabs[0]
    assert isinstance(blocks, gr.Blocks) and (title, elem_id) == ("EasyPhoto", "easyphoto")
    assert host.callback_errors == []


def test_settings_section_is_registered_from_the_typed_settings(webui_host_factory, flavour):
    from easyphoto.config import Settings

    host = start(webui_host_factory, flavour)
    host.create_ui()
    from modules import shared

    keys = {k for k, info in shared.opts.data_labels.items() if info.section == ("easyphoto", "EasyPhoto")}
    assert keys == {f"easyphoto_{s.name}" for s in Settings.field_specs()}
    assert shared.opts.easyphoto_face_stack == "auto"
    shared.opts.set("easyphoto_offline", True)
    from easyphoto.backends import webui

    assert webui.make_context().offline is True


def test_health_route_reports_version_and_flavour(webui_host_factory, flavour):
    host = start(webui_host_factory, flavour)
    host.create_ui()
    app = host.app_started(demo=object())
    body = TestClient(app).get("/easyphoto/v1/health").json()
    assert body["version"] == __version__ and body["host"]["flavour"] == flavour
    assert body["host"]["version"].startswith("f2." if flavour == "forge" else "v1.10")


def test_api_only_mode_works_without_demo(webui_host_factory, flavour):
    host = start(webui_host_factory, flavour)
    app = host.app_started(demo=None)  # --nowebui: no UI was built, demo is None
    assert TestClient(app).get("/easyphoto/v1/health").status_code == 200


def test_reload_ui_leaves_exactly_one_of_each(webui_host_factory, flavour):
    host = start(webui_host_factory, flavour)
    host.create_ui()
    first = host.app_started(demo=object())
    host.reload_ui()
    host.reload_ui()
    for category in ("ui_tabs", "ui_settings", "app_started"):
        assert len(our_callbacks(host, category)) == 1, category
    tabs = [t for t in host.create_ui() if t[1] == "EasyPhoto"]
    second = host.app_started(demo=object())
    assert len(tabs) == 1
    routes = assert_each_route_once(second)
    # the callback firing twice on the same app (e.g. another extension re-running it) adds nothing either
    from modules import script_callbacks

    script_callbacks.app_started_callback(None, second)
    assert our_routes(second) == routes == our_routes(first)


def test_loading_imports_nothing_heavy(webui_host_factory, flavour):
    before = {m for m in ("torch", "diffusers", "transformers", "onnxruntime") if m in sys.modules}
    start(webui_host_factory, flavour)
    after = {m for m in ("torch", "diffusers", "transformers", "onnxruntime") if m in sys.modules}
    assert after - before == set()


def test_preload_options_choose_folders_and_offline(webui_host_factory, tmp_path, flavour):
    data, models = tmp_path / "ep-data", tmp_path / "ep-models"
    host = start(webui_host_factory, flavour,
                 cmd_args=["--easyphoto-data-dir", str(data), "--easyphoto-models-dir", str(models),
                           "--easyphoto-offline"])
    from easyphoto.backends import webui

    ctx = webui.make_context()
    assert ctx.paths.data_root == data and ctx.paths.models_root == models and ctx.offline is True
    assert ctx.paths.lora_dir == host.root / "models" / "Lora"
    assert ctx.paths.controlnet_dir == host.root / "models" / "ControlNet"
    app = host.app_started(demo=None)
    assert TestClient(app).get("/easyphoto/v1/health").json()["offline"] is True


def test_default_folders_follow_the_webui(webui_host_factory, flavour):
    host = start(webui_host_factory, flavour)
    from easyphoto.backends import webui

    paths = webui.make_context().paths
    assert paths.data_root == host.root / "easyphoto"
    assert paths.models_root == host.root / "models" / "easyphoto"


def test_api_auth_is_honoured(webui_host_factory):
    host = start(webui_host_factory, "a1111", cmd_args=["--api-auth", "ann:pw1,bob:pw2"])
    client = TestClient(host.app_started(demo=None))
    assert client.get("/easyphoto/v1/health").status_code == 401
    assert client.get("/easyphoto/v1/health", auth=("ann", "wrong")).status_code == 401
    assert client.get("/easyphoto/v1/health", auth=("bob", "pw2")).status_code == 200


def test_loads_before_and_after_controlnet_and_without_it(webui_host_factory, flavour):
    host = start(webui_host_factory, flavour, controlnet=False)
    assert [e for e in host.errors if "easyphoto" in str(e).lower()] == []
    assert len([t for t in host.create_ui() if t[1] == "EasyPhoto"]) == 1


def test_training_frees_the_hosts_gpu_and_restores_it(webui_host_factory):
    start(webui_host_factory, "a1111").create_ui()  # registers the settings
    from modules import devices, sd_models, shared

    from easyphoto.backends import webui

    model = sd_models.model_data.sd_model
    assert model is not None and model.device == devices.device
    ctx = webui.make_context()
    with ctx.host_offload():
        assert model.device == devices.cpu
    assert model.device == devices.device
    shared.opts.set("easyphoto_unload_host_model_for_training", False)
    with ctx.host_offload():
        assert model.device == devices.device  # the setting turns it off


def test_training_lock_is_the_hosts_queue_lock(webui_host_factory, flavour):
    start(webui_host_factory, flavour)
    from modules import call_queue

    from easyphoto.backends import webui

    lock = webui.make_context().gpu_lock()
    with lock:  # a job holds the host's own lock; its generator takes it again on the same thread, without waiting
        assert call_queue.queue_lock.locked() and lock.held_by_this_thread()
        with webui.make_context().gpu_lock():
            assert call_queue.queue_lock.locked()
        assert call_queue.queue_lock.locked()
    assert not call_queue.queue_lock.locked() and not lock.held_by_this_thread()


def test_training_base_defaults_to_the_webuis_selected_checkpoint(webui_host_factory, flavour):
    host = start(webui_host_factory, flavour)
    from easyphoto.backends import webui

    chosen = webui.make_context().selected_checkpoint()
    assert chosen.is_file() and chosen.parent == host.root / "models" / "Stable-diffusion"


# ---------------------------------------------------------------------------------------------- safe by default

def post_identity(client, **kw):
    return client.post("/easyphoto/v1/identities", json={"id": "ann", "photos": []}, **kw)


def test_without_api_flag_only_health_is_served(webui_host_factory, flavour):
    host = start(webui_host_factory, flavour)
    client = TestClient(host.app_started(demo=object()))
    assert client.get("/easyphoto/v1/health").status_code == 200
    refused = post_identity(client)
    assert refused.status_code == 404 and "--api" in refused.json()["hint"]
    assert client.get("/easyphoto/v1/identities").status_code == 404
    assert "/easyphoto/v1/identities" not in client.get("/openapi.json").json()["paths"]
    assert not (host.root / "easyphoto" / "identities" / "ann").exists()


@pytest.mark.parametrize("flag", ["--api", "--nowebui"])
def test_api_or_nowebui_serves_the_whole_api_on_loopback(webui_host_factory, flavour, flag):
    host = start(webui_host_factory, flavour, cmd_args=[flag])
    client = TestClient(host.app_started(demo=None if flag == "--nowebui" else object()))
    assert post_identity(client).status_code == 201
    assert [i["id"] for i in client.get("/easyphoto/v1/identities").json()] == ["ann"]


@pytest.mark.parametrize("exposed", [["--listen"], ["--share"], ["--server-name", "0.0.0.0"],
                                     ["--server-name", "studio.example"], ["--ngrok", "tok"]])
def test_reachable_beyond_loopback_without_api_auth_refuses_with_the_flag_to_set(webui_host_factory, flavour,
                                                                                 exposed):
    host = start(webui_host_factory, flavour, cmd_args=["--api", *exposed])
    client = TestClient(host.app_started(demo=object()))
    assert client.get("/easyphoto/v1/health").status_code == 200
    for response in (post_identity(client), client.get("/easyphoto/v1/identities"),
                     client.delete("/easyphoto/v1/identities/ann")):
        assert response.status_code == 403
        assert "--api-auth user:password" in response.json()["hint"] and response.json()["phase"] == "auth"
    assert not (host.root / "easyphoto" / "identities" / "ann").exists()


def test_loopback_server_name_is_not_exposure(webui_host_factory):
    host = start(webui_host_factory, "a1111", cmd_args=["--api", "--server-name", "127.0.0.1"])
    assert post_identity(TestClient(host.app_started(demo=object()))).status_code == 201


def test_listen_with_api_auth_serves_the_api_to_authenticated_clients(webui_host_factory, flavour):
    host = start(webui_host_factory, flavour, cmd_args=["--api", "--listen", "--api-auth", "ann:pw1"])
    client = TestClient(host.app_started(demo=object()))
    assert post_identity(client).status_code == 401
    assert post_identity(client, auth=("ann", "wrong")).status_code == 401
    assert post_identity(client, auth=("ann", "pw1")).status_code == 201
