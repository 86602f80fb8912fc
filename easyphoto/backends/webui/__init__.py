"""The engine's side of the AUTOMATIC1111 / Forge WebUI (shared/reference/host-api.md).

`host` (flavour, folders, options, queue lock, the host's model), `sampling` (what the host's sampler runs),
`controlnet` (the host's ControlNet, one adapter per flavour), `generator` (WebUIGenerator), `upscaler` (the host's
Real-ESRGAN) and `context` (make_context). With `easyphoto_webui/` (the tab, settings and route callbacks) and
`scripts/`, these are the only modules that import the host. Host modules are imported inside functions, so
importing this package is cheap and works before the host has finished loading.
"""

from easyphoto.backends.webui.context import make_context
from easyphoto.backends.webui.generator import WebUIGenerator, make_generator
from easyphoto.backends.webui.host import (
    SETTING_PREFIX,
    HostQueueLock,
    current_settings,
    detect_flavour,
    host_job,
    host_model_offloaded,
    host_queue_lock,
    make_paths,
    selected_checkpoint,
)
from easyphoto.backends.webui.sampling import MIN_HOST_STEPS, HostSampling, host_sampling
from easyphoto.backends.webui.upscaler import HostUpscaler, host_upscaler

__all__ = [
    "MIN_HOST_STEPS",
    "SETTING_PREFIX",
    "HostQueueLock",
    "HostSampling",
    "HostUpscaler",
    "WebUIGenerator",
    "current_settings",
    "detect_flavour",
    "host_job",
    "host_model_offloaded",
    "host_queue_lock",
    "host_sampling",
    "host_upscaler",
    "make_context",
    "make_generator",
    "make_paths",
    "selected_checkpoint",
]
