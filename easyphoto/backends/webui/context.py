"""`make_context()`: the AppContext of EasyPhoto running inside the WebUI, assembled from the host's parts."""

from __future__ import annotations

import os

from easyphoto.backends.webui.generator import make_generator
from easyphoto.backends.webui.host import (
    cmd_opt,
    current_settings,
    detect_flavour,
    forced_offline,
    host_job,
    host_model_offloaded,
    host_queue_lock,
    host_version,
    make_paths,
    selected_checkpoint,
)
from easyphoto.backends.webui.upscaler import host_upscaler
from easyphoto.context import AppContext, HostInfo


def make_context() -> AppContext:
    host = HostInfo(detect_flavour(), host_version())
    return AppContext(make_paths(), host, current_settings, forced_offline(), gpu_lock=host_queue_lock,
                      host_offload=host_model_offloaded, host_job=host_job, selected_checkpoint=selected_checkpoint,
                      make_generator=make_generator, make_upscaler=host_upscaler,
                      broker=cmd_opt("easyphoto_broker") or os.environ.get("EASYPHOTO_BROKER") or None)
