"""Property-based tests from the OpenAPI document: every operation, with and without auth.

Schemathesis generates valid and invalid requests from /api/v1/openapi.json and checks that
no response is a server error and that every response matches the documented schema.
"""

from __future__ import annotations

import pytest
import redis
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import positive_data_acceptance

from api import create_app
from api.auth import create_key
from sdfarm.migrate import upgrade
from tests.conftest import make_settings


@pytest.fixture(params=["auth-off", "auth-on"])
def api_schema(request, tmp_path, redis_server, models_dir):
    redis.Redis.from_url(redis_server.url).flushall()
    url = f"sqlite:///{tmp_path / 'sdfarm.db'}"
    upgrade(url)
    auth = "on" if request.param == "auth-on" else "off"
    # A small cap keeps generated jobs cheap; rate limits off, or the fuzzer would only see 429s (its
    # requests without a key, checking they get 401, would soon use up the address's 401 allowance).
    app = create_app(
        make_settings(
            tmp_path,
            url,
            redis_server.url,
            models_dir,
            auth=auth,
            max_images_per_job=20,
            rate_limit_per_minute=0,
            auth_failures_per_minute=0,
        )
    )
    headers = {}
    if auth == "on":
        with app.extensions["sdfarm"].sessions() as session:
            headers["Authorization"] = "Bearer " + create_key(session, "fuzzer")[1]
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    schema.sdfarm_headers = headers
    return schema


def test_api_conforms_to_its_schema(api_schema):
    """Each operation gets its own generated cases (schemathesis' pytest plugin predates pytest 9)."""
    # A1111's txt2img/img2img wait for a worker this test has not got (tests/integration covers them);
    # a job's event stream stays open until the job ends (tests/api/test_job_status.py covers it).
    operations = [
        operation
        for operation in (result.ok() for result in api_schema.get_all_operations())
        if not operation.path.endswith(("/txt2img", "/img2img", "/events"))
    ]
    assert len(operations) >= 12
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case) -> None:
            # Business rules a schema cannot state (images per job = prompts x num_images under a cap,
            # a prompt of only spaces) answer 422 to schema-valid bodies; every other check stays on.
            case.call_and_validate(headers=api_schema.sdfarm_headers, excluded_checks=[positive_data_acceptance])

        check()
