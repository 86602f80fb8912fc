"""Double of AUTOMATIC1111/stable-diffusion-webui:modules/devices.py (host-api.md 3.10).

torch objects are used only when torch is ALREADY imported (loading the double must not import torch); otherwise
devices and dtypes are plain strings. ``torch_gc()`` only counts its calls (``torch_gc_calls``).
"""

import contextlib
import sys

_torch = sys.modules.get("torch")

torch_gc_calls = 0  # double-only


def has_xpu() -> bool:
    return False


def has_mps() -> bool:
    return False


def get_cuda_device_id():
    return 0


def get_cuda_device_string():
    return "cuda:0"


def get_optimal_device_name():
    return "cpu"


def get_optimal_device():
    return _torch.device("cpu") if _torch is not None else "cpu"


def get_device_for(task):
    return get_optimal_device()


def torch_gc():
    """Counts calls (Forge: memory_management.soft_empty_cache(); A1111: CUDA empty_cache + ipc_collect)."""
    global torch_gc_calls
    torch_gc_calls += 1


def torch_npu_set_device():
    pass


def enable_tf32():
    pass


def _dtype(name):
    return getattr(_torch, name) if _torch is not None else name


cpu = _torch.device("cpu") if _torch is not None else "cpu"
device = get_optimal_device()
device_interrogate = device_gfpgan = device_esrgan = device_codeformer = device
dtype = _dtype("float16")
dtype_vae = _dtype("float16")
dtype_unet = _dtype("float16")
dtype_inference = _dtype("float16")
unet_needs_upcast = False


def cond_cast_unet(input):
    return input


def cond_cast_float(input):
    return input


def autocast(disable=False):
    return contextlib.nullcontext()


def without_autocast(disable=False):
    return contextlib.nullcontext()


class NansException(Exception):
    pass


def test_for_nans(x, where):
    """Raise NansException when ``x`` (a numpy array or tensor) is all NaN, as the real check does."""
    isnan = getattr(x, "isnan", None)
    try:
        import numpy as np

        all_nan = bool(isnan().all()) if isnan is not None else bool(np.isnan(np.asarray(x)).all())
    except Exception:
        return
    if all_nan:
        raise NansException(f"A tensor with all NaNs was produced in {where}.")


def first_time_calculation():
    pass

