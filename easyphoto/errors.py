"""Errors the user can act on: each names the phase, what went wrong and what to do.

The reference reported almost every failure as "Failed to obtain Lora after training"; here every failure
kind is a class, raised with the input that caused it and a hint, and rendered the same way in the UI, the
API (as a JSON body) and the CLI.
"""

from __future__ import annotations


class EasyPhotoError(Exception):
    """Base class. `phase` says where it happened, `hint` what the user can do about it."""

    phase = "easyphoto"
    http_status = 400

    def __init__(self, message: str, *, hint: str = "", phase: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        if phase is not None:
            self.phase = phase

    def __str__(self) -> str:
        text = f"[{self.phase}] {self.message}"
        return f"{text} {self.hint}" if self.hint else text

    def to_dict(self) -> dict:
        return {"error": type(self).__name__, "phase": self.phase, "message": self.message, "hint": self.hint}


class InvalidIdentityId(EasyPhotoError):
    phase = "identity"
    http_status = 422


class IdentityNotFound(EasyPhotoError):
    phase = "identity"
    http_status = 404


class MissingWeights(EasyPhotoError):
    """Model files that are needed but not on disk (and could not, or may not, be downloaded)."""

    phase = "models"
    http_status = 409

    def __init__(self, message: str, *, missing: list[dict] | None = None, hint: str = ""):
        super().__init__(message, hint=hint)
        self.missing = missing or []

    def to_dict(self) -> dict:
        return {**super().to_dict(), "missing": self.missing}


class BackendUnavailable(EasyPhotoError):
    """A capability (diffusion backend, ControlNet, face stack) is not installed in this environment."""

    phase = "backend"
    http_status = 503


class NotFound(EasyPhotoError):
    http_status = 404


class Conflict(EasyPhotoError):
    """The request is valid but the thing is not in a state that allows it (not checked yet, busy, finished)."""

    http_status = 409


class InvalidRequest(EasyPhotoError):
    phase = "request"
    http_status = 422


class Cancelled(EasyPhotoError):
    """The user stopped the work (a job cancel, a stop file, Interrupt): raised by `JobContext.check_cancelled()`,
    or by an operation itself to end as CANCELLED. Here, not in the job layer, so operations can raise it."""

    phase = "job"
    http_status = 409
