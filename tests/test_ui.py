"""The Gradio tab builds on the installed gradio (3.41.2 in the A1111 set, 4.44.1 in the Forge set)."""

import pytest

from easyphoto.context import standalone_context
from easyphoto.ui import models_tab, tabs

gr = pytest.importorskip("gradio", reason="the Python 3.10 check runs without gradio")


def test_build_ui_has_the_three_sub_tabs(tmp_path):
    blocks = tabs.build_ui(standalone_context(tmp_path))
    assert isinstance(blocks, gr.Blocks)
    labels = [b.label for b in blocks.blocks.values() if isinstance(b, gr.Tab)]
    assert labels == ["Train", "Portrait", "Models"]
    ids = {getattr(b, "elem_id", None) for b in blocks.blocks.values()}
    assert {"easyphoto_models_table", "easyphoto_models_refresh", "easyphoto_train_coming"} <= ids


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
