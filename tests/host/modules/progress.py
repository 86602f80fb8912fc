"""Double of AUTOMATIC1111/stable-diffusion-webui:modules/progress.py: task ids and the task queue bookkeeping."""

import random
import string
import time

current_task = None
pending_tasks = {}
finished_tasks = []
recorded_results = []
recorded_results_limit = 2


def start_task(id_task):
    global current_task
    current_task = id_task
    pending_tasks.pop(id_task, None)


def finish_task(id_task):
    global current_task
    if current_task == id_task:
        current_task = None
    finished_tasks.append(id_task)
    if len(finished_tasks) > 16:
        finished_tasks.pop(0)


def create_task_id(task_type):
    n = "".join(random.choices(string.ascii_lowercase + string.digits, k=15))
    return f"task({task_type}-{n})"


def record_results(id_task, res):
    recorded_results.append((id_task, res))
    if len(recorded_results) > recorded_results_limit:
        recorded_results.pop(0)


def add_task_to_queue(id_job):
    pending_tasks[id_job] = time.time()


def setup_progress_api(app):
    """POST /internal/progress {"id_task": ...} -> {"active", "queued", "completed", "progress", "textinfo"}."""
    from modules import shared

    def progressapi(req: dict):
        id_task = req.get("id_task")
        active = id_task == current_task
        state = shared.state
        progress = state.job_no / state.job_count if active and state.job_count > 0 else 0
        return {"active": active, "queued": id_task in pending_tasks, "completed": id_task in finished_tasks,
                "progress": progress, "eta": None, "live_preview": None, "id_live_preview": -1,
                "textinfo": state.textinfo if active else None}

    return app.add_api_route("/internal/progress", progressapi, methods=["POST"])
