"""Shared pytest configuration: registers the fixture plugins of the WebUI host double and the test kit."""

import importlib
import importlib.util
import os

# pydantic 1.10 (the A1111 pin) registers a hypothesis plugin through an entry point; with current hypothesis it
# breaks every constrained pydantic-1 model defined after hypothesis is imported. Our property tests need none.
os.environ.setdefault("HYPOTHESIS_NO_PLUGINS", "1")

# The Python 3.10 check (run-tests.sh py310) has no torch: the kit's model fixtures are registered only where torch
# is installed; a test that needs them elsewhere fails with "fixture not found", never silently.
pytest_plugins = ["tests.host.fixtures"] + (["tests.kit.fixtures"] if importlib.util.find_spec("torch") else [])

CI_TRUTHY = {"1", "true", "yes", "on"}


def require_module(name: str, reason: str | None = None):
    """Import and return module `name` for a test module that cannot run without it.

    Locally a missing module skips the tests (pytest.importorskip); under CI (``CI`` set to a true value) it fails
    them, so a broken install can never turn green by skipping whole modules. Use it instead of a module-level
    ``pytest.importorskip`` (``from tests.conftest import require_module``)."""
    import pytest

    if os.environ.get("CI", "").strip().lower() in CI_TRUTHY:
        try:
            return importlib.import_module(name)
        except ImportError as exc:
            pytest.fail(f"{name} cannot be imported ({exc}); CI is set, so this is a failure, not a skip",
                        pytrace=False)
    return pytest.importorskip(name, reason=reason)
