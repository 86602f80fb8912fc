"""Super-resolution through the WebUI's own upscalers (`shared.sd_upscalers`), on the host's device.

A1111 >= 1.8 and Forge load Real-ESRGAN through spandrel themselves (modules/realesrgan_model.py): the entry's
scaler reads the .pth on every `do_upscale` onto `shared.device`, runs it (tiled by the ESRGAN_tile options) and
drops it; Forge first frees room for it (modules_forge.utils.prepare_free_memory). Only the Real-ESRGAN entries
the user enabled (Settings → Upscaling, "realesrgan_enabled_models": "R-ESRGAN 4x+" and "R-ESRGAN 4x+ Anime6B" by
default) are in the list; an entry whose file is not in models/RealESRGAN is downloaded by the host on first use.
`host_upscaler()` returns None when there is nothing suitable, and the caller falls back to Lanczos.
"""

from __future__ import annotations

import logging
import os
from urllib.parse import urlparse

from PIL import Image

from easyphoto.backends.webui.host import current_settings, forced_offline, host_queue_lock, on_host_thread

log = logging.getLogger("easyphoto")
# Photo models, best first: 4x+ is enabled by default (and most likely on disk); the Anime ones are not for photos.
PREFERRED = ("R-ESRGAN 4x+", "R-ESRGAN 2x+", "R-ESRGAN General 4xV3", "R-ESRGAN General WDN 4xV3")
_NO_MODEL = frozenset({"None", "Lanczos", "Nearest"})  # the host's built-ins: our own Lanczos does as well


def _source(entry) -> str:
    return str(getattr(entry, "local_data_path", None) or entry.data_path or "")


def _downloadable(entry) -> bool:
    return _source(entry).startswith(("http://", "https://"))


def weights_file(entry) -> str | None:
    """Where the entry's model file is, or where the host puts it when it downloads the entry's URL (its
    load_file_from_url uses a file already there: one copied in after the WebUI started counts)."""
    source = _source(entry)
    if not _downloadable(entry):
        return source or None
    folder = getattr(entry.scaler, "model_download_path", None)
    return os.path.join(folder, os.path.basename(urlparse(source).path)) if folder else None


def weights_on_disk(entry) -> bool:
    """The entry's model file is local: using it downloads nothing."""
    path = weights_file(entry)
    return path is not None and os.path.isfile(path)


def _offline() -> bool:
    return forced_offline() or current_settings().offline


class HostUpscaler:
    """An `easyphoto.generation.Upscaler` running one of the host's upscalers (`name` is the host's entry name)."""

    def __init__(self, entry):
        self.entry = entry
        self.name = str(entry.name)
        self.failed = False  # the host could not get the model: later calls do not try (and download) again

    def __call__(self, image: Image.Image, side: int) -> Image.Image:
        """`image` enlarged to side×side. Runs under the host's queue lock (a no-op inside our GPU jobs, which hold
        it) on the thread the host runs its GPU work on, so it never overlaps the WebUI's own generation."""
        image = image.convert("RGB")
        if self.failed or (image.width >= side and image.height >= side):  # the model would not run
            return image.resize((side, side), Image.LANCZOS)
        scale = max(side / image.width, side / image.height)
        with host_queue_lock():
            result = on_host_thread(lambda: self.entry.scaler.upscale(image, scale, self.entry.data_path))
        if not weights_on_disk(self.entry):
            # the host reported why (download or load failure) and enlarged with Lanczos instead
            self.failed = True
            log.warning("EasyPhoto: the WebUI could not load the upscaler %s (see its error above); enlarging with "
                        "Lanczos instead", self.name)
        return result if result.size == (side, side) else result.resize((side, side), Image.LANCZOS)

    def unload(self) -> None:
        """Give the host's GPU memory back. The host keeps no upscaler model between calls (A1111 and Forge load the
        spandrel model inside each do_upscale and drop it after), so what remains is the allocator's cache, which
        the host's own devices.torch_gc() empties (A1111: torch.cuda.empty_cache + ipc_collect; Forge:
        memory_management.soft_empty_cache)."""
        from modules import devices

        devices.torch_gc()


def _entries() -> dict:
    from modules import shared

    return {str(e.name): e for e in getattr(shared, "sd_upscalers", None) or [] if str(e.name) not in _NO_MODEL}


def host_upscaler(name: str | None = None) -> HostUpscaler | None:
    """The host's upscaler `name`, or by default the first of PREFERRED the host lists, with its file on disk
    first, else one the host will download (not when EasyPhoto is offline). None when there is none: the caller
    enlarges with Lanczos."""
    entries = _entries()
    names = [name] if name is not None else list(PREFERRED)
    listed = [entries[n] for n in names if n in entries]
    for entry in listed:
        if weights_on_disk(entry):
            return HostUpscaler(entry)
    if not _offline():
        for entry in listed:
            if _downloadable(entry):
                return HostUpscaler(entry)
    return None
