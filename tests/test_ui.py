"""The Gradio tab builds on the installed gradio (3.41.2 in the A1111 set, 4.44.1 in the Forge set)."""

from easyphoto.context import standalone_context
from easyphoto.ui import models_tab, tabs
from tests.conftest import require_module  # skips locally, fails under CI

gr = require_module("gradio", reason="the Python 3.10 check runs without gradio")


def test_build_ui_has_the_four_sub_tabs(tmp_path):
    blocks = tabs.build_ui(standalone_context(tmp_path))
    assert isinstance(blocks, gr.Blocks)
    labels = [b.label for b in blocks.blocks.values() if isinstance(b, gr.Tab)]
    assert labels == ["Train", "Portrait", "Try-On", "Models"]
    ids = {getattr(b, "elem_id", None) for b in blocks.blocks.values()}
    assert {"easyphoto_models_table", "easyphoto_models_refresh", "easyphoto_train_check", "easyphoto_train_start",
            "easyphoto_train_rank", "easyphoto_train_validation", "easyphoto_train_low_vram",
            "easyphoto_train_gradient_checkpointing", "easyphoto_portrait_max_attempts"} <= ids


def test_models_panel_reflects_the_disk(tmp_path):
    ctx = standalone_context(tmp_path)
    rows = models_tab.model_rows(ctx)
    assert {r[2] for r in rows} <= {"missing", "present"}
    assert "control_v11f1e_sd15_tile.pth (" in models_tab.missing_text(ctx)
    tile = ctx.paths.controlnet_dir / "control_v11f1e_sd15_tile.pth"
    tile.parent.mkdir(parents=True)
    tile.write_bytes(b"w")
    row = next(r for r in models_tab.model_rows(ctx) if r[0] == "control_v11f1e_sd15_tile.pth")
    assert row[2] == "present"
    assert "control_v11f1e_sd15_tile.pth (" not in models_tab.missing_text(ctx)


def test_offline_banner(tmp_path):
    blocks = tabs.build_ui(standalone_context(tmp_path, offline=True))
    header = next(b for b in blocks.blocks.values() if getattr(b, "elem_id", None) == "easyphoto_header")
    assert "offline mode" in header.value


def test_training_controls_come_from_the_train_config(tmp_path):
    from easyphoto.config import TrainConfig
    from easyphoto.ui.config_controls import ConfigForm
    from easyphoto.ui.train_tab import TRAIN_FIELDS, train_flow

    assert set(TRAIN_FIELDS) == {s.name for s in TrainConfig.field_specs()}  # every field, none picked by hand
    with gr.Blocks():
        form = ConfigForm(TrainConfig, "t")
        form.render(gr)
    built = form.components
    defaults = TrainConfig()
    assert [c.value for c in built] == ["" if v is None else v for v in (getattr(defaults, n) for n in TRAIN_FIELDS)]
    rank = built[TRAIN_FIELDS.index("rank")]
    assert isinstance(rank, gr.Slider) and (rank.minimum, rank.maximum) == (1, 1024)
    values = form.values(defaults)
    values[TRAIN_FIELDS.index("rank")] = 32.0  # sliders hand back floats
    values[TRAIN_FIELDS.index("network_alpha")] = 16.0
    assert form.to_config(values).rank == 32
    assert form.to_config(values).seed is None  # empty = random
    values[TRAIN_FIELDS.index("seed")] = "42"
    assert form.to_config(values).seed == 42
    ctx = standalone_context(tmp_path)
    [(status, _, job)] = list(train_flow(ctx, "nobody", "", False, values))
    assert status.startswith("**Cannot train:** No identity named 'nobody'") and job == ""
    ctx.identities.create("amy")
    values[TRAIN_FIELDS.index("network_alpha")] = 64.0
    [(status, _, _)] = list(train_flow(ctx, "amy", "", False, values))
    assert status.startswith("**Invalid training settings:**") and "network_alpha must be ≤ rank" in status


def test_portrait_tab_controls_flow_and_face_picking(tmp_path):
    from easyphoto.config import CompareConfig, PortraitConfig
    from easyphoto.ui import portrait_tab as pt
    from easyphoto.ui.config_controls import ConfigForm

    with gr.Blocks():
        form = ConfigForm(PortraitConfig, "p")
        form.render(gr)
    defaults = PortraitConfig()
    assert [c.value for c in form.components] == [getattr(defaults, n) for n in pt.PORTRAIT_FIELDS]
    assert set(pt.PORTRAIT_FIELDS) == {s.name for s in PortraitConfig.field_specs()}  # every field has a control
    values = [c.value for c in form.components]
    ctx = standalone_context(tmp_path)
    [(status, shown, job)] = list(pt.portrait_flow(ctx, [], "", [], None, "", values))
    assert status.startswith("**Cannot make portraits:** Choose at least one identity") and job == ""
    [(status, _, _)] = list(pt.portrait_flow(ctx, ["ghost"], "", ["user/x.png"], None, "", values))
    assert "No identity named 'ghost'" in status
    ctx.identities.create("amy")
    [(status, _, _)] = list(pt.portrait_flow(ctx, ["amy"], "0, x", ["user/x.png"], None, "", values))
    assert status.startswith("**Invalid portrait settings:** Face numbers must be whole numbers")
    compare = [getattr(CompareConfig(), n) for n in pt.COMPARE_FIELDS]
    [(status, shown, job)] = list(pt.compare_flow(ctx, ["amy", "bo"], "", ["user/x.png"], None, "", compare, values))
    assert status.startswith("**Cannot compare:** Compare renders one identity on one template.")
    assert shown == [] and job == ""
    [(status, _, _)] = list(pt.compare_flow(ctx, ["amy"], "0, x", ["user/x.png"], None, "", compare, values))
    assert status.startswith("**Invalid settings:** Face numbers must be whole numbers")
    assert pt.parse_face_numbers("2; 0 5") == [2, 0, 5] and pt.parse_face_numbers(" ") is None
    boxes = [[0, 0, 10, 10], [8, 0, 30, 10]]
    assert (pt.face_at(boxes, 5, 5), pt.face_at(boxes, 9, 5), pt.face_at(boxes, 20, 5), pt.face_at(boxes, 50, 5)) == (
        0, 0, 1, None)
    result = {"portraits": [{"file": "/o/00001-t.png", "faces": [{"identity_id": "amy", "likeness": 0.91234},
                                                                  {"identity_id": "bo", "likeness": None}]}]}
    assert pt.result_gallery(result) == [("/o/00001-t.png", "00001-t.png · FaceID amy 0.91, bo no face found")]
