"""Whatever JSON arrives at the coupon endpoints, they answer a Lago-shaped JSON status below 500."""
from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.api.test_never_500 import json_values

pytestmark = pytest.mark.django_db

FIELDS = ["name", "code", "description", "coupon_type", "amount_cents", "amount_currency", "percentage_rate",
          "frequency", "frequency_duration", "reusable", "expiration", "expiration_at", "applies_to",
          "external_customer_id", "coupon_code"]
VALID = {"coupon_type": st.sampled_from(["fixed_amount", "percentage"]),
         "frequency": st.sampled_from(["once", "recurring", "forever"]),
         "expiration": st.sampled_from(["no_expiration", "time_limit"]),
         "amount_cents": st.integers(min_value=-5, max_value=10**16), "amount_currency": st.sampled_from(["CAD", "JPY"]),
         "percentage_rate": st.decimals(min_value=-1, max_value=10**6, places=5, allow_nan=False),
         "frequency_duration": st.integers(min_value=-1, max_value=10**7),
         "external_customer_id": st.just("cus_1"), "coupon_code": st.just("welcome")}
field_values = st.one_of(*(st.tuples(st.just(f), VALID.get(f, json_values) | json_values) for f in FIELDS))
objects = st.lists(field_values, max_size=9).map(
    lambda pairs: {k: (str(v) if hasattr(v, "as_tuple") else v) for k, v in pairs})


@pytest.mark.parametrize("method, path, root", [("post", "/api/v1/coupons", "coupon"),
                                                ("put", "/api/v1/coupons/welcome", "coupon"),
                                                ("post", "/api/v1/applied_coupons", "applied_coupon")])
def test_random_coupon_bodies_never_cause_a_server_error(api_client, subscription, method, path, root):
    created = api_client.post("/api/v1/coupons", {"coupon": {
        "name": "Welcome", "code": "welcome", "coupon_type": "fixed_amount", "amount_cents": 100,
        "amount_currency": "CAD", "expiration": "no_expiration"}}, format="json")
    assert created.status_code == 200, created.content

    @settings(max_examples=60, suppress_health_check=list(HealthCheck), deadline=None)
    @given(body=objects | json_values, wrap=st.booleans())
    def check(body, wrap):
        payload = {root: body} if wrap else body
        response = getattr(api_client, method)(path, json.dumps(payload), content_type="application/json")
        assert response.status_code < 500, response.content
        assert response["Content-Type"] == "application/json"
        assert response.json()

    check()
