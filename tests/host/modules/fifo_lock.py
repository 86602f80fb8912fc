"""Double of AUTOMATIC1111/stable-diffusion-webui:modules/fifo_lock.py: a non-reentrant lock served in FIFO order.

Re-acquiring it from the thread that holds it would deadlock the real WebUI; the double raises RuntimeError
instead of hanging the test.
"""

import collections
import threading


class FIFOLock:
    def __init__(self):
        self._lock = threading.Lock()
        self._inner_lock = threading.Lock()
        self._pending_threads = collections.deque()
        self._owner = None

    def acquire(self, blocking=True):
        if self._owner == threading.get_ident():
            raise RuntimeError("deadlock: queue_lock is not reentrant and is already held by this thread")
        with self._inner_lock:
            lock_acquired = self._lock.acquire(False)
            if lock_acquired:
                self._owner = threading.get_ident()
                return True
            if not blocking:
                return False
            release_event = threading.Event()
            self._pending_threads.append(release_event)
        release_event.wait()
        acquired = self._lock.acquire()
        self._owner = threading.get_ident()
        return acquired

    def release(self):
        with self._inner_lock:
            self._owner = None
            if self._pending_threads:
                self._pending_threads.popleft().set()
            self._lock.release()

    def locked(self):
        return self._lock.locked()

    __enter__ = acquire

    def __exit__(self, t, v, tb):
        self.release()
