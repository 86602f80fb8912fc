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
from easyphoto.errors import EasyPhotoError
from easyphoto.ui.config_controls import ConfigForm, field_names, values_to_config
from easyphoto.ui.job_updates import cancel, follow_gallery
from easyphoto.ui.train_tab import upload_paths
from easyphoto.ui.tryon_tab import cannot, trained_garments

PREFIX = "easyphoto_design"
DESIGN_FIELDS = field_names(DesignConfig)
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
    from easyphoto.operations import submit

    try:
        job = submit(ctx, "design", design_params(ctx, layout_file, garment_id, values))
    except EasyPhotoError as exc:
        yield cannot("draw the design", exc), [], ""
        return
    except ValueError as exc:
        yield f"**Invalid design settings:** {exc}", [], ""
        return
    yield from follow_gallery(ctx, job.id, "Design", lambda result: (result_text(result), result_gallery(result)))


def result_gallery(result: dict) -> list[tuple[str, str]]:
    return [(file, f"{Path(file).name} · seed {seed}") for file, seed in zip(result.get("files", []),
                                                                            result.get("seeds", []), strict=False)]


def result_text(result: dict) -> str:
    size = result.get("size") or ["?", "?"]
    return (f"{len(result.get('files', []))} design(s), route **{result.get('route')}**, {size[0]}×{size[1]} "
            "(the layout's size; white outside the layout).")


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

    def run(layout, garment, *form_values):
        yield from design_flow(ctx, layout, garment, form_values)

    c["start"].click(fn=run, inputs=[c["layout"], c["garment"], *values],
                     outputs=[c["status"], c["results"], c["job_id"]])
    c["stop"].click(fn=lambda j: cancel(ctx, j, idle="Nothing is running."), inputs=[c["job_id"]],
                    outputs=[c["status"]])


__all__ = ["build_design_section", "design_flow", "design_params"]
