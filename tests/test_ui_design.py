"""The Design section of the Try-On tab (issue 16) on the installed gradio: it builds inside build_ui with every
DesignConfig field and the editor's frame, and its flow submits the design job with the controls' values or says
why it cannot, without a browser."""

import numpy as np
import pytest

from easyphoto.config import DesignConfig
from easyphoto.context import standalone_context
from easyphoto.design import layout as L
from easyphoto.design.smis.config import DesignTrainConfig
from easyphoto.ui import design_tab as dt
from easyphoto.ui import tabs
from tests.conftest import require_module
from tests.kit.ui import form_values
from tests.test_design import png, two_classes

gr = require_module("gradio", reason="the Python 3.10 check runs without gradio")


@pytest.fixture
def ctx(tmp_path):
    yield standalone_context(tmp_path / "data", offline=True)
    from easyphoto import operations

    operations.shutdown_all()


def values(**changed) -> list:
    return form_values(gr, DesignConfig, dt.DESIGN_FIELDS, **changed)


def test_the_section_builds_in_the_try_on_tab_with_every_config_field(tmp_path):
    blocks = tabs.build_ui(standalone_context(tmp_path))
    by_id = {getattr(b, "elem_id", None): b for b in blocks.blocks.values()}
    assert {f"easyphoto_design_{name}" for name in dt.DESIGN_FIELDS} <= set(by_id)
    for elem_id in ("easyphoto_design_section", "easyphoto_design_layout", "easyphoto_design_start",
                    "easyphoto_design_results", "easyphoto_design_editor_frame"):
        assert elem_id in by_id
    assert "/easyphoto/v1/design/editor" in by_id["easyphoto_design_editor_frame"].value


def test_the_flow_submits_the_layout_with_the_controls_values(ctx, tmp_path):
    layout = tmp_path / "layout.png"
    layout.write_bytes(png(L.visualise(two_classes())))
    params = dt.design_params(ctx, str(layout), "", values(category="dress", prompt="blue denim", steps=12))
    assert params.config.category == "dress" and params.config.prompt == "blue denim" and params.config.steps == 12
    assert params.layout.endswith(".png") and params.garment_id is None


def test_refusals_are_said_in_the_section(ctx, tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(png(np.full((64, 64), L.BACKGROUND, np.uint8)))
    for layout, words in ((None, "Upload the layout"), (str(empty), "empty")):
        status, gallery, job = next(dt.design_flow(ctx, layout, "", values()))
        assert "Cannot draw the design" in status and words in status and gallery == [] and job == ""
    status = next(dt.design_flow(ctx, str(tmp_path / "empty.png"), "no_such_garment", values()))[0]
    assert "Cannot draw the design" in status


def test_training_from_the_section_shows_the_sample_grids_and_the_last_losses(ctx, tmp_path):
    from easyphoto import weights
    from tests.kit.tiny_sd import torch_threads
    from tests.test_design_smis import TINY, VGG_ID, write_png_dataset, write_tiny_vgg

    write_tiny_vgg(weights.get(VGG_ID).path(ctx.paths))
    dataset = write_png_dataset(tmp_path / "set", count=3)
    values = form_values(gr, DesignTrainConfig, dt.TRAIN_FIELDS, **{**TINY, "steps": 2, "sample_every": 1})
    with torch_threads(1):
        *_, last = dt.train_flow(ctx, "shapes", str(dataset), False, False, values)
    status, gallery, _job = last
    assert "Model **shapes**: step 2 of 2" in status and "last losses: d_fake" in status
    assert [caption for _, caption in gallery] == ["step_00001", "step_00002"]
    assert "`shapes`" in dt.models_text(ctx)
    refused = next(dt.train_flow(ctx, "Bad Name!", str(dataset), False, False, values))[0]
    assert "Cannot train the design model" in refused
