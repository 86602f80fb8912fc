"""Shared pytest configuration: registers the fixture plugins of the WebUI host double and the test kit."""

import os

# pydantic 1.10 (the A1111 pin) registers a hypothesis plugin through an entry point; with current hypothesis it
# breaks every constrained pydantic-1 model defined after hypothesis is imported. Our property tests need none.
os.environ.setdefault("HYPOTHESIS_NO_PLUGINS", "1")

pytest_plugins = ["tests.host.fixtures", "tests.kit.fixtures"]
