"""The Train and Portrait tabs build a control for every config field from the models (issue 12): grouped, advanced
ones folded, values back into the same validated config, wrong values named by field. gradio 3.41 and 4.4x."""

import pytest

from easyphoto import operations
from easyphoto.config import PortraitConfig, TrainConfig
from easyphoto.context import standalone_context
from easyphoto.ui import tabs
from easyphoto.ui.config_controls import ADVANCED_LABEL, ConfigForm, InvalidSettings, field_names, groups
from tests.conftest import require_module  # skips locally, fails under CI

gr = require_module("gradio", reason="the Python 3.10 check runs without gradio")

FORMS = [(TrainConfig, "easyphoto_train"), (PortraitConfig, "easyphoto_portrait")]
GROUPS = {
    TrainConfig: ("Photo selection", "Dataset", "LoRA", "Training", "Speed and memory", "Validation"),
    PortraitConfig: ("Identity and prompt", "Template and crop", "Face fusion", "Pass 1", "Pass 2", "Sampling",
                     "Finishing", "Likeness"),
}
# A value other than the default in every kind of control (slider, number box, optional text, radio, text, checkbox)
CHANGED = {
    TrainConfig: dict(face_choice="best_match", min_sharpness=40.0, max_photos=12, resolution=768, caption="a, b",
                      rank=32, network_alpha=16, learning_rate=3e-4, max_train_steps=1200, seed=7, low_vram=True,
                      gradient_checkpointing=True, mixed_precision="bf16", attention="classic", identity_check=False),
    PortraitConfig: dict(lora_weight=0.75, additional_negative_prompt="blurry", short_side=768, seed=1234,
                         first_denoising_strength=0.5, sampler="Euler a", control_mode="balanced", likeness_gate=True,
                         max_attempts=5),
}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The whole EasyPhoto UI, as the WebUI and the standalone app build it, with each block's parent."""
    blocks = tabs.build_ui(standalone_context(tmp_path_factory.mktemp("ui")))
    parents = {}

    def walk(block):
        for child in getattr(block, "children", None) or []:
            parents[child._id] = block
            walk(child)

    walk(blocks)
    return {getattr(b, "elem_id", None): b for b in blocks.blocks.values()}, parents


def _accordions_above(block, parents) -> list:
    found = []
    while block._id in parents:
        block = parents[block._id]
        if isinstance(block, gr.Accordion):
            found.append(block)
    return found


@pytest.mark.parametrize(("model", "prefix"), FORMS)
def test_every_field_has_a_control_in_its_group_and_advanced_ones_are_folded(built, model, prefix):
    by_id, parents = built
    assert groups(model) == GROUPS[model]
    for spec in model.field_specs():
        assert spec.group, f"{spec.name} has no group"
        control = by_id[f"{prefix}_{spec.name}"]
        assert control.label == spec.title and spec.name in control.info
        assert control.do_not_save_to_config  # the WebUI's ui-config.json must not override the model's defaults
        above = _accordions_above(control, parents)
        if spec.advanced:
            assert (above[0].label, above[0].open) == (ADVANCED_LABEL, False), spec.name
            assert above[1].label == spec.group, spec.name
        else:
            assert above[0].label == spec.group, spec.name
    advanced = {s.name for s in model.field_specs() if s.advanced}
    assert advanced and advanced < set(field_names(model))  # some are folded, not all


def test_the_vram_levers_the_out_of_memory_hint_names_are_in_the_train_tab(built):
    by_id, parents = built
    for name in ("low_vram", "gradient_checkpointing", "mixed_precision", "batch_size", "rank"):
        control = by_id[f"easyphoto_train_{name}"]
        assert not [a for a in _accordions_above(control, parents) if a.label == ADVANCED_LABEL], name
    assert isinstance(by_id["easyphoto_train_mixed_precision"], gr.Radio)
    assert isinstance(by_id["easyphoto_train_low_vram"], gr.Checkbox)


def _through_gradio(components, values) -> list:
    """What the browser hands back for values the server sent: gradio's own postprocess, then preprocess."""
    return [c.preprocess(c.postprocess(v)) for c, v in zip(components, values, strict=True)]


@pytest.mark.parametrize(("model", "prefix"), FORMS)
def test_values_round_trip_into_the_same_config(model, prefix):
    with gr.Blocks():
        form = ConfigForm(model, prefix)
        form.render(gr)
    components = form.components
    assert [c.elem_id for c in components] == [f"{prefix}_{n}" for n in field_names(model)]
    assert [c.value for c in components] == form.values(model())  # the defaults are the model's
    assert form.to_config(_through_gradio(components, form.values(model()))) == model()
    changed = model(**CHANGED[model])
    back = form.to_config(_through_gradio(components, form.values(changed)))
    assert back == changed and back.to_dict() == changed.to_dict()


def test_groups_can_be_placed_apart_and_every_field_must_be_rendered():
    with gr.Blocks():
        form = ConfigForm(TrainConfig, "t")
        form.render(gr, ["Photo selection"], folded=True)
        with pytest.raises(RuntimeError, match="not rendered: \\['resolution'"):
            _ = form.components
        with pytest.raises(ValueError, match="no group 'Photo selection' left"):
            form.render(gr, ["Photo selection"])
        form.render(gr)
    assert len(form.components) == len(field_names(TrainConfig))


def test_wrong_values_name_the_field_and_where_its_control_is():
    with gr.Blocks():
        form = ConfigForm(TrainConfig, "t")
        form.render(gr)
    names = field_names(TrainConfig)

    def values_with(**changes):
        values = form.values(TrainConfig())
        for name, value in changes.items():
            values[names.index(name)] = value
        return values

    with pytest.raises(InvalidSettings, match=r"Training › Seed \(seed\): 'abc' is not a number"):
        form.to_config(values_with(seed="abc"))
    with pytest.raises(InvalidSettings, match=r"LoRA › Rank \(rank\): 32.5 is not a whole number"):
        form.to_config(values_with(rank=32.5))
    with pytest.raises(InvalidSettings, match=r"LoRA › Rank \(rank\): .*1024"):
        form.to_config(values_with(rank=2000.0))
    with pytest.raises(InvalidSettings) as both:
        form.to_config(values_with(max_photos="0", learning_rate=0.5))
    assert "(max_photos)" in str(both.value) and "Training › Learning Rate (learning_rate)" in str(both.value)
    with pytest.raises(InvalidSettings, match="network_alpha must be ≤ rank"):
        form.to_config(values_with(rank=16.0, network_alpha=32.0))


def test_train_and_portrait_flows_report_wrong_settings_by_field(tmp_path):
    from easyphoto.ui import portrait_tab, train_tab

    ctx = standalone_context(tmp_path)
    ctx.identities.create("amy")
    train_values = ConfigForm(TrainConfig, "t").values(TrainConfig())
    train_values[field_names(TrainConfig).index("max_yaw")] = 120.0
    [(status, _, job)] = list(train_tab.train_flow(ctx, "amy", "", False, train_values))
    assert status.startswith("**Invalid training settings:** Photo selection › Max Yaw (max_yaw)") and job == ""
    [(gallery, summary, job)] = list(train_tab.check_photos_flow(ctx, "amy", None, train_values))
    assert summary.startswith("**Invalid settings:**") and "(max_yaw)" in summary and gallery == [] and job == ""
    portrait_values = ConfigForm(PortraitConfig, "p").values(PortraitConfig())
    portrait_values[field_names(PortraitConfig).index("first_steps")] = 1.0
    [(status, _, _)] = list(portrait_tab.portrait_flow(ctx, ["amy"], "", ["user/x.png"], None, "", portrait_values))
    assert status.startswith("**Invalid portrait settings:**") and "Raise first_steps" in status


def test_check_photos_uses_the_photo_selection_settings_of_the_form(tmp_path, photos_same_man, photo_other_person):
    from easyphoto.ui.train_tab import check_photos_flow

    ctx = standalone_context(tmp_path)
    values = ConfigForm(TrainConfig, "t").values(TrainConfig(identity_check=False))
    try:
        *_, (gallery, summary, _) = check_photos_flow(ctx, "dan", [str(p) for p in (*photos_same_man,
                                                                                      photo_other_person)], values)
        assert "4 of 4 photos kept" in summary and len(gallery) == 4  # the other man is kept: no identity check
        [record] = operations.job_queue(ctx).list(kind="check_photos")
        assert record.params["config"]["identity_check"] is False
    finally:
        operations.shutdown_all()
