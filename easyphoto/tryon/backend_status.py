"""What every front end shows about the zero-shot try-on backends before anything is downloaded or run: each one's
licence, defaults and variants, whether its files are on disk, and whether the current settings allow it.

    [backend_status(ctx, name) for name in BACKENDS]    # GET /tryon/backends, the UI's licence text, the CLI

Torch-free: it reads the registry (easyphoto.tryon.zeroshot.registry), the manifest and the disk, nothing loads.
"""

from __future__ import annotations

from easyphoto import weights
from easyphoto.context import AppContext
from easyphoto.tryon.zeroshot.registry import GROUPS, LICENCE_SETTING, backend_info, weight_ids


def missing_files(ctx: AppContext, name: str, variant: str | None = None) -> list[str]:
    """The models.json ids of `name`'s files (its default variant's unless `variant`) that are not on disk."""
    info = backend_info(name)
    ids = weight_ids(name, variant or info.default_variant)
    return [i for i in ids if weights.status(weights.get(i), ctx.paths).state != "present"]


def backend_status(ctx: AppContext, name: str, *, allow_noncommercial: bool | None = None) -> dict:
    """One backend as the front ends list it. `allow_noncommercial`: the opt-in setting when already read (the
    settings file is read once per listing, not once per backend)."""
    info = backend_info(name)
    if allow_noncommercial is None:
        allow_noncommercial = bool(getattr(ctx.settings, LICENCE_SETTING))
    missing = missing_files(ctx, name)
    return {"name": info.name, "title": info.title, "licence": info.licence, "licence_line": info.describe_licence(),
            "commercial_use": info.commercial, "note": info.note, "steps": info.steps, "guidance": info.guidance,
            "default_variant": info.default_variant, "variants": list(info.variants),
            "categories": {variant: list(cats) for variant, cats in info.categories.items()},
            "files_present": not missing, "missing_files": missing, "group": GROUPS[name],
            "allowed": info.commercial or allow_noncommercial, "setting": LICENCE_SETTING}


__all__ = ["backend_status", "missing_files"]
