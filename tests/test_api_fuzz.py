"""Malformed requests never produce a server error: property tests over every route of the OpenAPI schema.

Bounded on purpose (examples per route, no deadline surprises): the point is that no shape of body, id or query
reaches an unhandled exception, not to spend minutes fuzzing.
"""

import json
import re
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from easyphoto import operations
from easyphoto.app import create_app
from easyphoto.context import standalone_context

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=30)
    # NaN and ±Infinity too: JSON has neither, but clients write them and Starlette's parser accepts them; the body
    # is sent as raw text below (httpx >= 0.28 refuses to encode them itself).
    | st.floats(),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
PATH_VALUE = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=40)


@pytest.fixture(scope="module")
def app_client(tmp_path_factory):
    # Offline: a fuzzed body can reach POST /models/fetch, and the test must never open a socket to the internet.
    ctx = standalone_context(tmp_path_factory.mktemp("fuzz"), offline=True)
    client = TestClient(create_app(ctx, with_ui=False), raise_server_exceptions=False)
    yield client, client.get("/openapi.json").json()
    operations.shutdown_all()


def routes(schema):
    return [(path, method) for path, ops in schema["paths"].items() for method in ops]


def fill(path, value):
    """Put `value` in every path parameter, percent-encoded as a real client would send it."""
    return re.sub(r"\{[^}]+\}", quote(value, safe=""), path)


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(body=JSON, value=PATH_VALUE, query=st.dictionaries(st.sampled_from(["state", "kind", "limit", "group",
                                                                          "images", "include_dataset"]),
                                                           st.text(max_size=10), max_size=3))
def test_no_route_answers_5xx(app_client, body, value, query):
    client, schema = app_client
    for path, method in routes(schema):
        response = client.request(method.upper(), fill(path, value), content=json.dumps(body), params=query,
                                  headers={"content-type": "application/json"})
        assert response.status_code < 500, (method, path, body, response.text[:300])


NON_FINITE_BODIES = [
    '{"identity_id": "x", "config": {"learning_rate": NaN}}',
    '{"config": {"max_yaw": Infinity}}',
    '{"identity_ids": ["x"], "templates": [], "face_indices": [-Infinity], "config": {"cfg_scale": NaN}}',
    '{"id": NaN, "photos": [NaN]}',
    "NaN",
    "[Infinity, -Infinity]",
]


@pytest.mark.parametrize("text", NON_FINITE_BODIES)
def test_non_finite_numbers_in_any_body_never_give_5xx(app_client, text):
    client, schema = app_client
    for path, method in routes(schema):
        if method == "get":
            continue
        response = client.request(method.upper(), fill(path, "x"), content=text,
                                  headers={"content-type": "application/json"})
        assert response.status_code < 500, (method, path, text, response.text[:300])
        json.loads(response.text, parse_constant=_refuse)  # the answer itself is strict JSON


def _refuse(token):
    raise AssertionError(f"bare {token} in a response")


def test_every_route_was_covered(app_client):
    _, schema = app_client
    paths = {p for p, _ in routes(schema)}
    assert {"/easyphoto/v1/identities", "/easyphoto/v1/jobs/{job_id}", "/easyphoto/v1/models/fetch",
            "/easyphoto/v1/identities/import", "/easyphoto/v1/portraits", "/easyphoto/v1/train"} <= paths
