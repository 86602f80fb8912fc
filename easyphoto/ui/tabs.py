"""The EasyPhoto tab: sub-tabs Train, Portrait and Models."""

from __future__ import annotations

from easyphoto import __version__, weights
from easyphoto.context import AppContext

MODEL_COLUMNS = ["File", "Group", "State", "Licence", "Purpose", "Path"]


def build_ui(ctx: AppContext):
    """Return an unrendered `gr.Blocks` (the WebUI renders it inside its own tab)."""
    import gradio as gr

    with gr.Blocks(analytics_enabled=False, title="EasyPhoto") as blocks:
        gr.Markdown(
            f"**EasyPhoto {__version__}** · host: {ctx.host.flavour}"
            + (" · offline mode: nothing is downloaded" if ctx.offline else ""),
            elem_id="easyphoto_header",
        )
        with gr.Tabs(elem_id="easyphoto_tabs"):
            with gr.Tab("Train", elem_id="easyphoto_train_tab"):
                from easyphoto.ui.train_tab import build_train_tab

                build_train_tab(gr, ctx)
            with gr.Tab("Portrait", elem_id="easyphoto_portrait_tab"):
                _coming_panel(
                    gr,
                    "Portrait",
                    "Pick an identity and template photos to make studio portraits (two-pass inpaint + face "
                    "fusion through ControlNet). This panel arrives with the portrait pipeline.",
                )
            with gr.Tab("Models", elem_id="easyphoto_models_tab"):
                _models_panel(gr, ctx)
    return blocks


def _coming_panel(gr, name: str, text: str) -> None:
    gr.Markdown(f"### {name}\n{text}", elem_id=f"easyphoto_{name.lower()}_coming")


def model_rows(ctx: AppContext) -> list[list[str]]:
    return [
        [s.entry.filename, s.entry.group, s.state, s.entry.licence, s.entry.purpose, s.found_at]
        for s in weights.status_all(ctx.paths)
    ]


def missing_text(ctx: AppContext) -> str:
    missing = [s for s in weights.status_all(ctx.paths) if s.state != "present"]
    if not missing:
        return "All model files are present."
    lines = "\n".join(weights.how_to_fetch(s) for s in missing)
    return f"{len(missing)} model file(s) are not on disk yet. To add them by hand:\n\n{lines}"


def _models_panel(gr, ctx: AppContext) -> None:
    table = gr.Dataframe(
        value=model_rows(ctx),
        headers=MODEL_COLUMNS,
        interactive=False,
        wrap=True,
        elem_id="easyphoto_models_table",
    )
    instructions = gr.Markdown(missing_text(ctx), elem_id="easyphoto_models_missing")
    refresh = gr.Button("Refresh", elem_id="easyphoto_models_refresh")
    refresh.click(fn=lambda: (model_rows(ctx), missing_text(ctx)), inputs=[], outputs=[table, instructions])
