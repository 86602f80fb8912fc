"""The "Design" section of the Try-On tab (issue 16): a garment drawn from a semantic layout.

The layout editor (its own page, /easyphoto/v1/design/editor, shown here in a frame) paints the 46 FGVC6 classes
and can generate by itself; here a layout PNG (the editor's download, a label PNG or an FGVC6-style mask) is drawn
with every DesignConfig setting and, on route diffusion, a trained garment's LoRA. Flows are plain functions of the
context and the controls' values (the tests call them without a browser); every refusal becomes Markdown.
"""

from collections.abc import Iterator, Sequence
from pathlib import Path

from easyphoto.config import DesignConfig
from easyphoto.context import AppContext
from easyphoto.design.smis.config import DesignTrainConfig
from easyphoto.errors import EasyPhotoError
from easyphoto.ui.config_controls import ConfigForm, field_names, values_to_config
from easyphoto.ui.job_updates import cancel, submit_and_follow
from easyphoto.ui.train_tab import upload_paths
from easyphoto.ui.tryon_tab import trained_garments

PREFIX = "easyphoto_design"
DESIGN_FIELDS = field_names(DesignConfig)
TRAIN_FIELDS = field_names(DesignTrainConfig)
NONE = ""
EDITOR = "/easyphoto/v1/design/editor"


def design_params(ctx: AppContext, layout_file, garment_id: str, values: Sequence):
    """The checked DesignParams of the controls; the layout and the route's inputs are said now, before any job."""
    from easyphoto.design.run import check_request
    from easyphoto.job_params import DesignParams

    config = values_to_config(DesignConfig, DESIGN_FIELDS, values)
    layouts = upload_paths([layout_file] if layout_file else [])
    if not layouts:
        raise EasyPhotoError("Upload the layout first (the editor's Download layout, or a label PNG).",
                             phase="design")
    params = DesignParams.checked({"layout": str(layouts[0]), "garment_id": (garment_id or "").strip() or None,
                                   "config": config.to_dict()}, "design")
    check_request(ctx, params)
    return params


def design_flow(ctx: AppContext, layout_file, garment_id: str, values: Sequence) -> Iterator[tuple]:
    """Yields (status, gallery, job id) while the design job runs; then the images with their seeds."""
    yield from submit_and_follow(ctx, "design", lambda: design_params(ctx, layout_file, garment_id, values),
                                 "draw the design", "design ", "Design",
                                 lambda result: (result_text(result), result_gallery(result)))


def result_gallery(result: dict) -> list[tuple[str, str]]:
    return [(file, f"{Path(file).name} · seed {seed}") for file, seed in zip(result.get("files", []),
                                                                            result.get("seeds", []), strict=False)]


def result_text(result: dict) -> str:
    size = result.get("size") or ["?", "?"]
    return (f"{len(result.get('files', []))} design(s), route **{result.get('route')}**, {size[0]}×{size[1]} "
            "(the layout's size; white outside the layout).")


def train_params(ctx: AppContext, name: str, dataset: str, resume: bool, overwrite: bool, values: Sequence):
    """The checked DesignTrainParams of the training controls; dataset and model problems are said now."""
    from easyphoto.design.smis.run import check_request
    from easyphoto.job_params import DesignTrainParams

    config = values_to_config(DesignTrainConfig, TRAIN_FIELDS, values)
    params = DesignTrainParams.checked({"model_name": (name or "").strip(), "dataset": (dataset or "").strip(),
                                        "config": None if resume else config.to_dict(), "resume": bool(resume),
                                        "overwrite": bool(overwrite)}, "design_train")
    check_request(ctx, params)
    return params


def train_flow(ctx: AppContext, name: str, dataset: str, resume: bool, overwrite: bool,
               values: Sequence) -> Iterator[tuple]:
    """Yields (status, sample grids, job id) while the design_train job runs; then the last losses."""
    yield from submit_and_follow(ctx, "design_train",
                                 lambda: train_params(ctx, name, dataset, resume, overwrite, values),
                                 "train the design model", "training ", "Design training",
                                 lambda result: (train_text(result), sample_grids(result)))


def sample_grids(result: dict) -> list[tuple[str, str]]:
    folder = Path(result.get("samples") or "")
    return [(str(path), path.stem) for path in sorted(folder.glob("step_*.png"))] if folder.is_dir() else []


def train_text(result: dict) -> str:
    from easyphoto.design.smis.run import read_losses_file

    logged = read_losses_file(Path(result["losses"])) if result.get("losses") else []
    last = logged[-1] if logged else {}
    terms = ", ".join(f"{key} {value:.3f}" for key, value in sorted(last.items())
                      if key != "step" and isinstance(value, float))
    return (f"Model **{result.get('model_name')}**: step {result.get('step')} of {result.get('steps')}"
            f"{'; last losses: ' + terms if terms else ''}. Draw with route *smis* and smis_model "
            f"`{result.get('model_name')}`.")


def models_text(ctx: AppContext) -> str:
    from easyphoto.design.smis.run import list_design_models

    models = list_design_models(ctx)
    if not models:
        return "No design model yet: train one below."
    return "Design models: " + ", ".join(f"`{m['name']}` ({m.get('state', '?')}, step {m.get('step', '?')})"
                                         for m in models)


def editor_frame() -> str:
    return (f'<iframe src="{EDITOR}" title="Layout editor" style="width:100%;height:720px;border:0"></iframe>'
            f'<p><a href="{EDITOR}" target="_blank">Open the layout editor in its own window</a> (inside the WebUI '
            "it needs the WebUI's API: start it with --api).</p>")


def build_design_section(gr, ctx: AppContext) -> None:
    gr.Markdown("### Design\nPaint a garment's parts (collar, sleeves, body, pockets, ...) with the 46 FGVC6 classes, "
                "then draw it: on the base model through the segmentation ControlNet, or with a generator you "
                "trained on your own layouts.", elem_id=f"{PREFIX}_section")
    c: dict = {"form": ConfigForm(DesignConfig, PREFIX)}
    with gr.Accordion("Layout editor", open=False, elem_id=f"{PREFIX}_editor"):
        gr.HTML(editor_frame(), elem_id=f"{PREFIX}_editor_frame")
    with gr.Row():
        with gr.Column():
            c["layout"] = gr.File(label="Layout PNG (the editor's download, or a label PNG: 0–45, 255 = background)",
                                  file_types=["image"], elem_id=f"{PREFIX}_layout")
            c["garment"] = gr.Dropdown(label="Garment LoRA (route diffusion, optional)",
                                       choices=[NONE, *trained_garments(ctx)], value=NONE,
                                       elem_id=f"{PREFIX}_garment")
        with gr.Column():
            c["form"].render(gr, ["Route", "Prompt"])
    with gr.Accordion("Design settings", open=False, elem_id=f"{PREFIX}_settings"):
        c["form"].render(gr, folded=True)
    with gr.Row():
        c["start"] = gr.Button("Draw", variant="primary", elem_id=f"{PREFIX}_start")
        c["stop"] = gr.Button("Cancel", elem_id=f"{PREFIX}_stop")
    c["job_id"] = gr.State("")
    c["status"] = gr.Markdown(elem_id=f"{PREFIX}_status")
    c["results"] = gr.Gallery(label="Designs", columns=3, elem_id=f"{PREFIX}_results")
    values = c["form"].components
    _build_training(gr, ctx)

    def run(layout, garment, *form_values):
        yield from design_flow(ctx, layout, garment, form_values)

    c["start"].click(fn=run, inputs=[c["layout"], c["garment"], *values],
                     outputs=[c["status"], c["results"], c["job_id"]])
    c["stop"].click(fn=lambda j: cancel(ctx, j, idle="Nothing is running."), inputs=[c["job_id"]],
                    outputs=[c["status"]])


def _build_training(gr, ctx: AppContext) -> None:
    """Train the native generator (route smis) on a dataset folder in the FGVC6 layout."""
    prefix = f"{PREFIX}_train"
    form = ConfigForm(DesignTrainConfig, prefix)
    with gr.Accordion("Train the native generator (route smis)", open=False, elem_id=f"{prefix}_section"):
        models = gr.Markdown(models_text(ctx), elem_id=f"{prefix}_models")
        with gr.Row():
            name = gr.Textbox(label="Model name", elem_id=f"{prefix}_name")
            dataset = gr.Textbox(label="Dataset folder on the server (images/ + train.csv, or masks/*.png)",
                                 elem_id=f"{prefix}_dataset")
            resume = gr.Checkbox(label="Resume", value=False, elem_id=f"{prefix}_resume")
            overwrite = gr.Checkbox(label="Start again (delete its checkpoints)", value=False,
                                    elem_id=f"{prefix}_overwrite")
        form.render(gr)
        with gr.Row():
            start = gr.Button("Train", variant="primary", elem_id=f"{prefix}_start")
            stop = gr.Button("Cancel", elem_id=f"{prefix}_stop")
        job_id = gr.State("")
        status = gr.Markdown(elem_id=f"{prefix}_status")
        samples = gr.Gallery(label="Sample grids (a row per layout: layout, real, generated)", columns=2,
                             elem_id=f"{prefix}_samples")

    def run(model, folder, is_resume, is_overwrite, *form_values):
        yield from train_flow(ctx, model, folder, is_resume, is_overwrite, form_values)

    start.click(fn=run, inputs=[name, dataset, resume, overwrite, *form.components],
                outputs=[status, samples, job_id]).then(fn=lambda: models_text(ctx), outputs=[models])
    stop.click(fn=lambda j: cancel(ctx, j, idle="Nothing is running."), inputs=[job_id], outputs=[status])


__all__ = ["build_design_section", "design_flow", "design_params", "train_flow", "train_params"]
