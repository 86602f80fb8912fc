"""pytest plugin of the WebUI host double: ``webui_host_factory`` (register with
``pytest_plugins = ["tests.host.fixtures"]`` in tests/conftest.py, or import the fixture into a test module)."""

from __future__ import annotations

import pytest

from tests.host.harness import WebUIHost


@pytest.fixture
def webui_host_factory(tmp_path):
    """``factory(flavour="a1111", **kw) -> started WebUIHost``; starting another host stops the previous one, and
    every host is stopped (modules purged, sys.path/env restored) at teardown."""
    hosts = []

    def factory(flavour="a1111", **kw):
        host = WebUIHost(tmp_path / f"host{len(hosts)}", flavour=flavour, **kw)
        hosts.append(host)
        return host.start()

    yield factory
    for host in reversed(hosts):
        host.stop()
