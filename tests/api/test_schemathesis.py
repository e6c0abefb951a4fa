"""Schemathesis 4 against the project's own OpenAPI (``/api/v1/schema``), through the WSGI app
and the real PostgreSQL: every operation with generated valid and invalid input, then
stateful sequences along the links schemathesis infers between operations (a created
plan's code fed to ``GET/PUT/DELETE /plans/{code}``, ...).

Checked: no server error (5xx), and every response conforms to the schema (documented
status code, content type, body). The coverage phase sends every boundary and negative case
the schema defines for each operation; the random phases are bounded (5 examples per
operation, 10 sequences) to keep the suite fast.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, transaction
from hypothesis import HealthCheck, settings as hypothesis_settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from billing_project.wsgi import application

pytestmark = pytest.mark.django_db

schema = schemathesis.openapi.from_wsgi("/api/v1/schema", application)

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
FAST = {"deadline": None, "suppress_health_check": list(HealthCheck), "database": None}


@contextmanager
def isolated_requests() -> Iterator[None]:
    """Requests in a savepoint of the test's transaction, rolled back after: each example
    starts from the same data (hypothesis replays an example to shrink it), and the WSGI
    handler does not close the test's connection at each request (as Django's test client)."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        with transaction.atomic():
            yield
            transaction.set_rollback(True)
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@schema.parametrize()
@hypothesis_settings(max_examples=5, **FAST)
def test_every_operation_answers_within_its_schema(case, api_key, subscription):
    with isolated_requests():
        case.call_and_validate(headers={"Authorization": f"Bearer {api_key}"}, checks=CHECKS)


# The links schemathesis infers between operations (a resource created by one call fed to
# the calls that take its identifier): stateful sequences follow them.
APIWorkflow = schema.as_state_machine()


def test_stateful_sequences_answer_within_the_schema(api_key, subscription):
    seen: list[tuple[str, str, int]] = []

    class Workflow(APIWorkflow):  # type: ignore[valid-type,misc]
        def setup(self) -> None:
            self._isolation = isolated_requests()
            self._isolation.__enter__()

        def teardown(self) -> None:
            self._isolation.__exit__(None, None, None)

        def get_call_kwargs(self, case):
            return {"headers": {"Authorization": f"Bearer {api_key}"}}

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            seen.append((case.method, case.path, response.status_code))
            case.validate_response(response, checks=CHECKS)

    Workflow.run(settings=hypothesis_settings(max_examples=10, stateful_step_count=6, **FAST))
    # the sequences did follow links: resources were created and then read or changed
    created = {path for method, path, status in seen if method == "POST" and status == 200}
    followed = {path for method, path, status in seen if "{" in path}
    assert created and followed, seen
