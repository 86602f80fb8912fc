"""The training process: `python -m easyphoto.train.child SPEC.json STOP_FILE`.

The WebUI (or the standalone server) starts one of these per training job (easyphoto.train.runner), so the GPU
memory of the training is freed when it exits, and a crash (CUDA error, segfault, OOM killer) ends this process,
never the host.

Protocol: SPEC.json is an easyphoto.train.spec.TrainSpec. stdout carries events only, one JSON object per line
(easyphoto.train.pipeline's events, then exactly one of {"event": "done", "result": ...},
{"event": "error", "error": {...}} or {"event": "cancelled"}). An error that is a bug (an exception that is not an
EasyPhotoError, a spec that does not validate included: the runner wrote it) carries "bug": this process's
versions and traceback (easyphoto.bugreport.process_details), from which the runner's job gets its bug report.
Everything else a library prints (Python or native code) goes to stderr, which the runner writes to child.log:
file descriptor 1 is pointed at stderr at start-up and the events go to a private duplicate of the original.
Training stops, leaving a resumable state, when STOP_FILE exists.

The process never outlives the one that started it (a kill -9 of the WebUI or the server would otherwise leave
a training holding the GPU with nobody reading its events): see guard_parent. The last checkpoint stays on disk,
so the training can be resumed from it.

Exit status: 0 done, 1 error, 3 cancelled, 4 the parent died (2 is argparse's, for a bad command line).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import logging
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import IO, Any

EXIT_OK, EXIT_ERROR, EXIT_CANCELLED, EXIT_ORPHANED = 0, 1, 3, 4
PARENT_PID_ENV = "EASYPHOTO_PARENT_PID"  # set by easyphoto.train.runner.child_env
PARENT_POLL_S = 1.0  # the watchdog's polling interval: a dead parent is noticed within about this
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
BUG_HINT = "this is a bug: please report it with the log"


class EventWriter:
    """Writes events to the real stdout, one JSON line each, flushed at once."""

    def __init__(self, stream: IO[str]):
        self._stream = stream

    def __call__(self, event: dict) -> None:
        line = json.dumps(_jsonable(event), ensure_ascii=False, allow_nan=False)
        self._stream.write(line + "\n")
        self._stream.flush()


def _jsonable(value: Any) -> Any:
    """Events must stay valid JSON: NaN/inf losses become None, paths and numpy scalars become str/float."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, str | int):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "item"):  # numpy / torch scalars
        try:
            return _jsonable(value.item())
        except (TypeError, ValueError):
            pass
    return str(value)


def take_over_stdout() -> IO[str]:
    """Return a text stream on the original stdout; point fd 1 and sys.stdout at stderr for everyone else."""
    sys.stdout.flush()
    events_fd = os.dup(1)
    os.dup2(2, 1)  # native code writing to fd 1 now lands in the log
    sys.stdout = sys.stderr  # Python-level print() too
    return os.fdopen(events_fd, "w", encoding="utf-8", buffering=1)


def guard_parent(*, use_prctl: bool = True, interval: float = PARENT_POLL_S) -> int:
    """End this process when its parent dies; returns the parent pid being watched.

    Two layers: on Linux the kernel sends SIGKILL on the parent's death (prctl PR_SET_PDEATHSIG: immediate, even
    while a CUDA kernel runs); everywhere a daemon thread polls os.getppid(), which changes when the parent dies
    and this process is re-parented (POSIX), and exits with EXIT_ORPHANED. A parent that died before either was in
    place is caught by comparing with the pid the runner passed in EASYPHOTO_PARENT_PID.
    Linux sends the signal when the *thread* that started us ends: the runner starts the child from the job queue's
    worker thread, which lives as long as the queue, and a queue shutdown cancels the training anyway.
    """
    watched = os.getppid()
    if use_prctl:
        _set_parent_death_signal()
    if _parent_already_gone(watched):
        _orphaned()
    thread = threading.Thread(target=_watch_parent, args=(watched, interval), name="easyphoto-parent-watch",
                              daemon=True)
    thread.start()
    return watched


def _set_parent_death_signal() -> None:
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    except (OSError, AttributeError) as exc:  # the watchdog thread still covers it
        logging.getLogger("easyphoto").warning("parent-death signal not set (%s); polling the parent instead", exc)


def _parent_already_gone(watched: int) -> bool:
    """True when the runner that started us is already dead (we were re-parented before we looked)."""
    try:
        expected = int(os.environ.get(PARENT_PID_ENV, ""))
    except ValueError:
        return False
    if expected == watched or os.name != "posix":  # on Windows os.kill(pid, 0) would terminate pid: never call it
        return False
    try:
        os.kill(expected, 0)
    except ProcessLookupError:
        return True
    except OSError:  # alive, but not ours to signal
        return False
    return False  # alive: we were started through a wrapper process; watch that one


def _watch_parent(watched: int, interval: float) -> None:
    while True:
        time.sleep(interval)
        if os.getppid() != watched:
            _orphaned()


def _orphaned() -> None:
    try:
        print("easyphoto: the process that started this training has exited; stopping (the last checkpoint can be "
              "resumed)", file=sys.stderr, flush=True)
    finally:
        os._exit(EXIT_ORPHANED)  # no cleanup handlers: nobody reads our events any more


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m easyphoto.train.child SPEC.json STOP_FILE", file=sys.stderr)
        return 2
    guard_parent()
    emit = EventWriter(take_over_stdout())
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    spec_file, stop_file = Path(argv[0]), Path(argv[1])
    return run_spec(spec_file, stop_file, emit)


def run_spec(spec_file: Path, stop_file: Path, emit: EventWriter) -> int:
    from easyphoto.errors import Cancelled, EasyPhotoError

    try:
        from easyphoto.train import pipeline
        from easyphoto.train.spec import read_spec

        result = pipeline.run(read_spec(spec_file), emit, stop_file.exists)
    except Cancelled:
        logging.getLogger("easyphoto").info("training stopped on request; the state is resumable")
        emit({"event": "cancelled"})
        return EXIT_CANCELLED
    except EasyPhotoError as exc:
        traceback.print_exc(file=sys.stderr)
        emit({"event": "error", "error": exc.to_dict()})
        return EXIT_ERROR
    except BaseException as exc:  # noqa: BLE001 - reported as an event, whatever it is
        traceback.print_exc(file=sys.stderr)
        emit({"event": "error", "error": unexpected_error(exc)})
        return EXIT_ERROR
    emit({"event": "done", "result": result if isinstance(result, dict) else {"result": result}})
    return EXIT_OK


def unexpected_error(exc: BaseException) -> dict:
    """The error event of an exception that is not an EasyPhotoError. An Exception is a bug: it carries this
    process's versions and traceback for the parent's bug report; an interruption (Ctrl-C reaches the child
    too, SystemExit) is not."""
    error = {"error": type(exc).__name__, "phase": "train", "message": str(exc) or type(exc).__name__,
             "hint": BUG_HINT}
    if isinstance(exc, Exception):
        try:
            from easyphoto.bugreport import process_details

            error["bug"] = process_details(exc)
        except Exception as failure:  # the details are a courtesy: the error event must still be sent
            print(f"easyphoto: could not describe the bug ({failure!r})", file=sys.stderr)
    return error


if __name__ == "__main__":
    sys.exit(main())
