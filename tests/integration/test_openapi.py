"""The served OpenAPI schema is valid, describes every route, and no request gets a 500.

schemathesis generates requests from the schema (valid ones and, within the
schema's types, odd ones: huge ids, odd strings, NUL bytes) and sends them
to a real boss; every answer must be a 2xx or a 4xx the schema names, with a
one-line error. Examples are bounded and derandomized, so a run is repeatable.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import content_type_conformance, status_code_conformance

from shoal.boss.openapi import openapi_schema
from tests.conftest import RunningBoss

SCHEMA = schemathesis.openapi.from_dict(openapi_schema()).exclude(
    path="/v1/stream"  # an endless event stream: read by the dashboard's test instead
)


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningBoss]:
    from shoal.spec import spec_from_dict

    boss = RunningBoss(Path(tmp_path_factory.mktemp("fuzzed")))
    # Something to find: a run with a task, a worker, an attempt, a file.
    boss.boss.submit(spec_from_dict({"name": "r", "tasks": [{"name": "t", "run": "true"}]}))
    boss.boss.datastore.write_bytes("sets/a.txt", b"a")
    yield boss
    boss.stop()


def test_the_served_schema_is_valid_and_describes_every_route(boss: RunningBoss) -> None:
    from openapi_spec_validator import validate
    from starlette.routing import Route

    with urllib.request.urlopen(boss.url + "/openapi.json") as answer:
        served: dict[str, Any] = json.load(answer)
    validate(served)  # raises on any error of the specification
    routes = boss.boss.app.app.routes  # type: ignore[attr-defined]
    described = {(path, method.upper()) for path, ops in served["paths"].items() for method in ops}
    for route in routes:
        assert isinstance(route, Route)
        if route.path in ("/", "/login", "/logout", "/static/{name}", "/openapi.json"):
            continue  # the dashboard's pages and the schema itself
        path = route.path.replace("{path:path}", "{path}")
        for method in (route.methods or set()) - {"HEAD"}:
            assert (path, method) in described, f"{method} {path} is not in the schema"


@SCHEMA.parametrize()
@settings(
    max_examples=30,
    derandomize=True,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_request_gets_a_server_error(case: Any, fuzzed: RunningBoss) -> None:
    wait = case.body.get("wait") if isinstance(case.body, dict) else None
    if case.path == "/v1/sync" and isinstance(wait, int | float) and not isinstance(wait, bool):
        # An idle worker's sync is held open up to `wait` seconds: keep it short.
        case.body["wait"] = min(wait, 0.2)
    response = case.call_and_validate(
        base_url=fuzzed.url,
        headers={"Authorization": f"Bearer {fuzzed.token}"},
        checks=[not_a_server_error, status_code_conformance, content_type_conformance],
        timeout=30,
    )
    if response.status_code >= 400:
        error = response.json()["error"]
        assert isinstance(error, str) and "\n" not in error, error
