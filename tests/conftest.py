"""Shared pytest configuration: registers the fixture plugins of the WebUI host double and the test kit."""

pytest_plugins = ["tests.host.fixtures", "tests.kit.fixtures"]
