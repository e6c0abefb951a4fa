"""``/coupons`` and ``/applied_coupons`` through the official lago-python-client (1.55.0) against a
live server: every response parses into the client's models; errors are Lago-shaped."""
from __future__ import annotations

import pytest
from lago_python_client.exceptions import LagoApiError
from lago_python_client.models import AppliedCoupon, Coupon, Customer
from lago_python_client.models.applied_coupon import AppliedCouponResponse
from lago_python_client.models.coupon import CouponResponse, LimitationConfiguration

pytestmark = pytest.mark.django_db(transaction=True)


def test_coupon_catalogue_through_the_client(lago, other_lago):
    fixed = lago.coupons.create(Coupon(
        name="Welcome", code="welcome", coupon_type="fixed_amount", amount_cents=2000, amount_currency="CAD",
        frequency="once", expiration="no_expiration", reusable=False))
    assert isinstance(fixed, CouponResponse)
    assert (fixed.amount_cents, fixed.amount_currency, fixed.frequency, fixed.reusable, fixed.limited_plans) == (
        2000, "CAD", "once", False, False)
    pct = lago.coupons.create(Coupon(
        name="Ten off", code="ten", coupon_type="percentage", percentage_rate=12.5, frequency="recurring",
        frequency_duration=3, expiration="time_limit", expiration_at="2099-01-01T00:00:00Z"))
    assert (pct.percentage_rate, pct.frequency_duration, pct.expiration_at, pct.amount_cents) == (
        12.5, 3, "2099-01-01T00:00:00Z", None)

    assert lago.coupons.find("welcome").lago_id == fixed.lago_id
    listing = lago.coupons.find_all({"per_page": 1})
    assert len(listing["coupons"]) == 1 and listing["meta"]["total_count"] == 2
    renamed = lago.coupons.update(Coupon(name="Welcome!", amount_cents=3000), "welcome")
    assert (renamed.name, renamed.amount_cents) == ("Welcome!", 3000)
    # Another service sees none of them.
    assert other_lago.coupons.find_all()["coupons"] == []
    with pytest.raises(LagoApiError) as missing:
        other_lago.coupons.find("welcome")
    assert missing.value.status_code == 404 and missing.value.response["code"] == "coupon_not_found"

    with pytest.raises(LagoApiError) as duplicate:
        lago.coupons.create(Coupon(name="x", code="welcome", coupon_type="percentage", percentage_rate=5,
                                   expiration="no_expiration"))
    assert duplicate.value.status_code == 422
    assert duplicate.value.response["error_details"] == {"code": ["value_already_exist"]}
    with pytest.raises(LagoApiError) as limited:
        lago.coupons.create(Coupon(name="x", code="plans_only", coupon_type="percentage", percentage_rate=5,
                                   expiration="no_expiration",
                                   applies_to=LimitationConfiguration(plan_codes=["starter"])))
    assert limited.value.response["error_details"] == {"applies_to": ["not_supported"]}
    with pytest.raises(LagoApiError) as no_amount:
        lago.coupons.create(Coupon(name="x", code="broke", coupon_type="fixed_amount", amount_currency="CAD",
                                   expiration="no_expiration"))
    assert no_amount.value.response["error_details"] == {"amount_cents": ["value_is_invalid"]}

    deleted = lago.coupons.destroy("ten")
    assert deleted.terminated_at is not None
    assert [c.code for c in lago.coupons.find_all()["coupons"]] == ["welcome"]


def test_applied_coupons_through_the_client(lago, other_lago):
    lago.customers.create(Customer(external_id="cus_1", name="Acme", currency="CAD"))
    lago.customers.create(Customer(external_id="cus_2", name="Beta", currency="CAD"))
    lago.coupons.create(Coupon(name="Welcome", code="welcome", coupon_type="fixed_amount", amount_cents=2000,
                               amount_currency="CAD", frequency="once", expiration="no_expiration",
                               reusable=False))
    lago.coupons.create(Coupon(name="Ten", code="ten", coupon_type="percentage", percentage_rate=10,
                               frequency="forever", expiration="no_expiration"))
    applied = lago.applied_coupons.create(AppliedCoupon(external_customer_id="cus_1", coupon_code="welcome",
                                                        amount_cents=1500))
    assert isinstance(applied, AppliedCouponResponse)
    assert (applied.coupon_code, applied.external_customer_id, applied.status, applied.amount_cents,
            applied.amount_cents_remaining, applied.frequency) == ("welcome", "cus_1", "active", 1500, 1500, "once")
    # Overrides as Lago: a percentage coupon applied recurring for 2 periods at 25 %.
    override = lago.applied_coupons.create(AppliedCoupon(
        external_customer_id="cus_2", coupon_code="ten", percentage_rate=25, frequency="recurring",
        frequency_duration=2))
    assert (override.percentage_rate, override.frequency, override.frequency_duration,
            override.frequency_duration_remaining) == (25.0, "recurring", 2, 2)

    with pytest.raises(LagoApiError) as again:  # not reusable
        lago.applied_coupons.create(AppliedCoupon(external_customer_id="cus_1", coupon_code="welcome"))
    assert again.value.status_code == 422 and again.value.response["error_details"] == {
        "coupon": ["coupon_is_not_reusable"]}
    with pytest.raises(LagoApiError) as unknown:
        lago.applied_coupons.create(AppliedCoupon(external_customer_id="cus_1", coupon_code="nope"))
    assert unknown.value.status_code == 404 and unknown.value.response["code"] == "coupon_not_found"
    with pytest.raises(LagoApiError) as stranger:  # another service's customer does not exist here
        other_lago.applied_coupons.create(AppliedCoupon(external_customer_id="cus_1", coupon_code="welcome"))
    assert stranger.value.status_code == 404

    everything = lago.applied_coupons.find_all()
    assert {a.lago_id for a in everything["applied_coupons"]} == {applied.lago_id, override.lago_id}
    assert everything["meta"]["total_count"] == 2
    mine = lago.applied_coupons.find_all({"external_customer_id": "cus_2"})["applied_coupons"]
    assert [a.lago_id for a in mine] == [override.lago_id]
    by_code = lago.applied_coupons.find_all({"coupon_code[]": "welcome"})["applied_coupons"]
    assert [a.lago_id for a in by_code] == [applied.lago_id]
    assert other_lago.applied_coupons.find_all()["applied_coupons"] == []

    removed = lago.applied_coupons.destroy("cus_1", applied.lago_id)
    assert (removed.status, removed.terminated_at is not None) == ("terminated", True)
    assert lago.applied_coupons.destroy("cus_1", applied.lago_id).terminated_at == removed.terminated_at
    assert [a.lago_id for a in lago.applied_coupons.find_all({"status": "active"})["applied_coupons"]] == [
        override.lago_id]
    with pytest.raises(LagoApiError) as gone:
        lago.applied_coupons.destroy("cus_2", applied.lago_id)
    assert gone.value.status_code == 404 and gone.value.response["code"] == "applied_coupon_not_found"
    # Once applied, a coupon keeps its value (only its name and expiration change).
    kept = lago.coupons.update(Coupon(name="Ten percent", percentage_rate=50), "ten")
    assert (kept.name, kept.percentage_rate) == ("Ten percent", 10.0)
    # Deleting a coupon terminates its applications.
    lago.coupons.destroy("ten")
    assert lago.applied_coupons.find_all({"status": "active"})["applied_coupons"] == []
