"""Double of AUTOMATIC1111/stable-diffusion-webui:modules/shared_state.py ``class State`` (host-api.md 3.8)."""

import datetime
import threading
import time
from typing import Optional

from modules import devices


class State:
    skipped = False
    interrupted = False
    stopping_generation = False
    job = ""
    job_no = 0
    job_count = 0
    processing_has_refined_job_count = False
    job_timestamp = "0"
    sampling_step = 0
    sampling_steps = 0
    current_latent = None
    current_image = None
    current_image_sampling_step = 0
    id_live_preview = 0
    textinfo = None
    time_start = None
    server_start = None
    _server_command_signal = threading.Event()
    _server_command: Optional[str] = None

    def __init__(self):
        self.server_start = time.time()
        self._server_command_signal = threading.Event()

    @property
    def need_restart(self) -> bool:
        return self.server_command == "restart"

    @need_restart.setter
    def need_restart(self, value: bool) -> None:
        if value:
            self.server_command = "restart"

    @property
    def server_command(self):
        return self._server_command

    @server_command.setter
    def server_command(self, value: Optional[str]) -> None:
        self._server_command = value
        self._server_command_signal.set()

    def wait_for_server_command(self, timeout: Optional[float] = None) -> Optional[str]:
        if self._server_command_signal.wait(timeout):
            self._server_command_signal.clear()
            req = self._server_command
            self._server_command = None
            return req
        return None

    def request_restart(self) -> None:
        self.interrupt()
        self.server_command = "restart"

    def skip(self):
        self.skipped = True

    def interrupt(self):
        self.interrupted = True

    def stop_generating(self):
        self.stopping_generation = True

    def nextjob(self):
        """Called once per n_iter by processing: advances job_no and resets the sampling step."""
        self.job_no += 1
        self.sampling_step = 0
        self.current_image_sampling_step = 0

    def dict(self):
        return {
            "skipped": self.skipped,
            "interrupted": self.interrupted,
            "stopping_generation": self.stopping_generation,
            "job": self.job,
            "job_count": self.job_count,
            "job_timestamp": self.job_timestamp,
            "job_no": self.job_no,
            "sampling_step": self.sampling_step,
            "sampling_steps": self.sampling_steps,
        }

    def begin(self, job: str = "(unknown)"):
        """Reset the flags of a previous job (interrupted, skipped, ...), job_count=-1, job_no=0."""
        self.sampling_step = 0
        self.time_start = time.time()
        self.job_count = -1
        self.processing_has_refined_job_count = False
        self.job_no = 0
        self.job_timestamp = datetime.datetime.now().strftime("%Y%m%d%H%M%S")
        self.current_latent = None
        self.current_image = None
        self.current_image_sampling_step = 0
        self.id_live_preview = 0
        self.skipped = False
        self.interrupted = False
        self.stopping_generation = False
        self.textinfo = None
        self.job = job
        devices.torch_gc()

    def end(self):
        self.job = ""
        self.job_count = 0
        devices.torch_gc()

    def set_current_image(self):
        """Live previews need a model; nothing to decode in the double."""

    def do_set_current_image(self):
        """Live previews need a model; nothing to decode in the double."""

    def assign_current_image(self, image):
        self.current_image = image
        self.id_live_preview += 1
