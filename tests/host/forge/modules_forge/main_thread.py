"""Double of lllyasviel/stable-diffusion-webui-forge:modules_forge/main_thread.py: calls run directly (no loop)."""


def async_run(func, *args, **kwargs):
    return func(*args, **kwargs)


def run_and_wait_result(func, *args, **kwargs):
    """Forge runs ``func`` on the main thread and waits; the double simply calls it."""
    return func(*args, **kwargs)


def loop():
    pass
