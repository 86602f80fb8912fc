"""Shared pytest configuration: registers the fixture plugins of the WebUI host double and the test kit."""

import importlib.util
import os

# pydantic 1.10 (the A1111 pin) registers a hypothesis plugin through an entry point; with current hypothesis it
# breaks every constrained pydantic-1 model defined after hypothesis is imported. Our property tests need none.
os.environ.setdefault("HYPOTHESIS_NO_PLUGINS", "1")

# The Python 3.10 check (run-tests.sh py310) has no torch: the kit's model fixtures are registered only where torch
# is installed; a test that needs them elsewhere fails with "fixture not found", never silently.
pytest_plugins = ["tests.host.fixtures"] + (["tests.kit.fixtures"] if importlib.util.find_spec("torch") else [])
