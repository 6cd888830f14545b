"""Schemathesis against our own OpenAPI document: no generated request may get a 5xx.

Bounded (15 examples per operation, no shrinking deadline) so the whole run stays well under a
minute. The catalog holds one object of each kind, so generated small ids sometimes hit real
rows and PATCH/attach paths run past the 404.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from adtarget.api.app import create_app
from adtarget.settings import Settings
from serving import seed_line_item

MAX_EXAMPLES = 15


@pytest.fixture
def fuzz_app(settings: Settings, started: Callable[..., Any]) -> Any:
    app = create_app(settings)
    started(app)
    return app


@pytest.fixture
def seed_data(fuzz_app: Any) -> None:
    from fastapi.testclient import TestClient

    client = TestClient(fuzz_app)
    client.post("/v1/dimensions", json={"name": "country", "type": "category"})
    adv = seed_line_item(client)
    client.post(
        "/v1/creatives", json={"advertiser_id": adv["id"], "name": "cr", "format": "video_15s"}
    )
    client.post("/v1/segments", json={"name": "seg", "kind": "rule", "rule": 'country = "US"'})


def test_no_server_errors(fuzz_app: Any, seed_data: None) -> None:
    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzz_app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 20
    failures: list[str] = []
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=MAX_EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def check(case: Any) -> None:
            try:
                response = case.call()
            except Exception as exc:  # an exception escaping the app is a 500 too
                failures.append(
                    f"{case.method} {case.formatted_path} body={case.body!r} -> "
                    f"{type(exc).__name__}: {exc}"
                )
                return
            if response.status_code >= 500:
                failures.append(
                    f"{case.method} {case.formatted_path} body={case.body!r} -> "
                    f"{response.status_code}: {response.text[:300]}"
                )

        check()
    assert not failures, "\n".join(failures[:10])
