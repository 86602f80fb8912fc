"""The EasyPhoto tab: sub-tabs Train, Portrait, Try-On and Models."""

from __future__ import annotations

from easyphoto import __version__
from easyphoto.context import AppContext


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
                from easyphoto.ui.portrait_tab import build_portrait_tab

                build_portrait_tab(gr, ctx)
            with gr.Tab("Try-On", elem_id="easyphoto_tryon_tab"):
                from easyphoto.ui.anygarment_tab import build_anygarment_section
                from easyphoto.ui.design_tab import build_design_section
                from easyphoto.ui.model_tab import build_model_section
                from easyphoto.ui.tryon_tab import build_tryon_tab

                build_tryon_tab(gr, ctx)
                build_anygarment_section(gr, ctx)  # any garment photo, no training (zero-shot backends)
                build_model_section(gr, ctx)  # the digital model, below garments and try-on
                build_design_section(gr, ctx)  # a garment drawn from a semantic layout
            with gr.Tab("Models", elem_id="easyphoto_models_tab"):
                from easyphoto.ui.models_tab import build_models_tab

                build_models_tab(gr, ctx)
    return blocks
