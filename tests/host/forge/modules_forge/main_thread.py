"""Double of lllyasviel/stable-diffusion-webui-forge:modules_forge/main_thread.py.

Forge queues ``func`` for its main thread (``loop()``) and polls for the finished task; the double runs the task at
once on the calling thread. Like the real ``Task.work``, an exception is printed and kept (``last_exception``,
``task.exception``), never raised: ``run_and_wait_result`` then returns None. ``tasks`` (double-only) records every
finished task so tests can see what went through the main thread.
"""

import threading
import traceback

lock = threading.Lock()
last_id = 0
waiting_list = []
finished_list = []
last_exception = None
tasks = []  # double-only: every finished Task, in order


class Task:
    def __init__(self, task_id, func, args, kwargs):
        self.task_id = task_id
        self.func = func
        self.args = args
        self.kwargs = kwargs
        self.result = None
        self.exception = None

    def work(self):
        global last_exception
        try:
            self.result = self.func(*self.args, **self.kwargs)
            self.exception = None
            last_exception = None
        except Exception as e:
            traceback.print_exc()
            print(e)
            self.exception = e
            last_exception = e


def loop():
    """The real one serves ``waiting_list`` forever on the main thread; the double has nothing queued."""


def async_run(func, *args, **kwargs):
    global last_id
    with lock:
        last_id += 1
        new_task = Task(task_id=last_id, func=func, args=args, kwargs=kwargs)
    new_task.work()
    with lock:
        finished_list.append(new_task)
        tasks.append(new_task)
    return new_task.task_id


def run_and_wait_result(func, *args, **kwargs):
    """Run ``func`` "on the main thread" and return its result (None if it raised: printed, not re-raised)."""
    current_id = async_run(func, *args, **kwargs)
    with lock:
        finished_task = next(t for t in finished_list if t.task_id == current_id)
        finished_list.remove(finished_task)
    return finished_task.result
