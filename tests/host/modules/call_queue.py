"""Double of AUTOMATIC1111/stable-diffusion-webui:modules/call_queue.py (host-api.md 2.6).

``wrap_gradio_gpu_call`` = queue_lock + state.begin/end + progress task bookkeeping; every wrapper resets the state
flags afterwards and turns an exception into an HTML error appended to ``extra_outputs`` (not raised).
"""

import html
import time
from functools import wraps

from modules import devices, errors, fifo_lock, progress, shared

queue_lock = fifo_lock.FIFOLock()


def wrap_queued_call(func):
    def f(*args, **kwargs):
        with queue_lock:
            res = func(*args, **kwargs)
        return res

    return f


def wrap_gradio_gpu_call(func, extra_outputs=None):
    @wraps(func)
    def f(*args, **kwargs):
        # a first argument "task(...)" is the job id used by /internal/progress
        if args and type(args[0]) is str and args[0].startswith("task(") and args[0].endswith(")"):
            id_task = args[0]
            progress.add_task_to_queue(id_task)
        else:
            id_task = None
        with queue_lock:
            shared.state.begin(job=id_task)
            progress.start_task(id_task)
            try:
                res = func(*args, **kwargs)
                progress.record_results(id_task, res)
            finally:
                progress.finish_task(id_task)
            shared.state.end()
        return res

    return wrap_gradio_call(f, extra_outputs=extra_outputs, add_stats=True)


def wrap_gradio_call(func, extra_outputs=None, add_stats=False):
    @wraps(func)
    def f(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        finally:
            shared.state.skipped = False
            shared.state.interrupted = False
            shared.state.stopping_generation = False
            shared.state.job_count = 0
            shared.state.job = ""

    return wrap_gradio_call_no_job(f, extra_outputs, add_stats)


def wrap_gradio_call_no_job(func, extra_outputs=None, add_stats=False):
    @wraps(func)
    def f(*args, extra_outputs_array=extra_outputs, **kwargs):
        t = time.perf_counter()
        try:
            res = list(func(*args, **kwargs))
        except Exception as e:
            errors.report(f"Error completing request\nArguments: {str(args)[:1000]} {str(kwargs)[:1000]}",
                          exc_info=True)
            if extra_outputs_array is None:
                extra_outputs_array = [None, ""]
            error_message = f"{type(e).__name__}: {e}"
            res = list(extra_outputs_array) + [f"<div class='error'>{html.escape(error_message)}</div>"]
        devices.torch_gc()
        if not add_stats:
            return tuple(res)
        elapsed = time.perf_counter() - t
        if isinstance(res[-1], str):
            res[-1] += f"<div class='performance'><p class='time'>Time taken: <wbr><span class='measurement'>" \
                       f"{elapsed:.1f} sec.</span></p></div>"
        return tuple(res)

    return f
