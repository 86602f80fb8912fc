"""Helpers of the UI tests: a config form's values as its gradio controls hold them."""

from __future__ import annotations


def form_values(gr, config_cls, fields, **changed) -> list:
    """The values of a freshly rendered ConfigForm of `config_cls` (in `fields` order), some changed by name."""
    from easyphoto.ui.config_controls import ConfigForm

    with gr.Blocks():
        form = ConfigForm(config_cls, "x")
        form.render(gr)
    found = [c.value for c in form.components]
    names = list(fields)
    for name, value in changed.items():
        found[names.index(name)] = value
    return found
