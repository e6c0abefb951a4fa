"""Rating end to end on PostgreSQL: real events, real RatedUsage rows."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal as D

import pytest
from django.core.management import CommandError, call_command

from metering import locks, rating
from metering.models import RatedUsage, Subscription
from tests.rating.conftest import T0, T1, T2

pytestmark = pytest.mark.django_db

CPU = ("cpu_seconds", "sum_agg", "standard", {"amount": "0.0075", "unit_batch": 3600, "free_units": 360000})
NOW = T0 + timedelta(days=10)


def rated(sub) -> dict[str, RatedUsage]:
    return {r.charge.metric.code: r for r in RatedUsage.objects.filter(subscription=sub).select_related("charge__metric")}


def test_cad_0_0075_per_core_hour_end_to_end(catalogue):
    plan = catalogue.plan("cloud", [CPU])
    sub = catalogue.subscription(plan)
    catalogue.events(sub, "cpu_seconds", [(T0, 200000), (T0 + timedelta(days=1), 163600), (NOW, 1799)])
    # outside the half-open window: the instant before, and its end instant
    catalogue.events(sub, "cpu_seconds", [(T0 - timedelta(microseconds=1), 999999), (T1, 999999)])

    summary = rating.rate_open_windows(now=NOW + timedelta(seconds=1))

    assert summary.rows_created == 1
    row = rated(sub)["cpu_seconds"]
    assert row.units == D("365399")
    assert row.billable_units == D("5399")
    # 5,399 s x 0.0075 / 3,600 s = 0.0112479166... -> 0.011248 (6 dp, once)
    assert row.amount == D("0.011248")
    assert row.events_count == 3
    assert (row.window_start, row.window_end, row.state) == (T0, T1, "open")

    usage = rating.compute_usage(subscription=sub, window_start=T0, window_end=T1)
    [charge_usage] = usage.charges
    assert (charge_usage.units, charge_usage.billable_units, charge_usage.amount, charge_usage.events_count) == (
        D("365399"), D("5399"), D("0.011248"), 3)
    assert usage.amount_cents == 1 and charge_usage.amount_cents == 1


def test_rerun_changes_nothing(catalogue):
    plan = catalogue.plan("cloud", [CPU, ("requests", "count_agg", "standard", {"amount": "0.001"})])
    subs = [catalogue.subscription(plan) for _ in range(3)]
    for sub in subs:
        catalogue.events(sub, "cpu_seconds", [(T0, 400000)])
        catalogue.events(sub, "requests", [(T0, None), (NOW, None)])
    first = rating.rate_open_windows(now=NOW)
    assert first.rows_created == 6
    before = {r.id: (r.amount, r.rated_at) for r in RatedUsage.objects.all()}

    again = rating.rate_open_windows(now=NOW + timedelta(minutes=5))
    assert (again.rows_created, again.rows_updated) == (0, 0)
    assert {r.id: (r.amount, r.rated_at) for r in RatedUsage.objects.all()} == before
    assert RatedUsage.objects.count() == 6

    # new usage updates the same row, never a second one
    catalogue.events(subs[0], "requests", [(NOW, None)])
    third = rating.rate_open_windows(now=NOW + timedelta(minutes=10))
    assert (third.rows_created, third.rows_updated) == (0, 1)
    assert rated(subs[0])["requests"].amount == D("0.003")


def test_zero_amount_creates_no_row_but_updates_an_existing_one(catalogue):
    plan = catalogue.plan("cloud", [CPU])
    sub = catalogue.subscription(plan)
    catalogue.events(sub, "cpu_seconds", [(T0, 360000)])  # exactly the included quota
    rating.rate_subscription(subscription_id=sub.id, now=NOW)
    assert not RatedUsage.objects.exists()

    catalogue.events(sub, "cpu_seconds", [(NOW, 3600)])
    rating.rate_subscription(subscription_id=sub.id, now=NOW)
    assert rated(sub)["cpu_seconds"].amount == D("0.0075")

    # the quota is raised (plan edit): the same row drops to 0 instead of vanishing
    plan.charges.update(free_units=D("1000000"))
    summary = rating.rate_subscription(subscription_id=sub.id, now=NOW)
    assert summary.rows_updated == 1
    row = rated(sub)["cpu_seconds"]
    assert (row.amount, row.billable_units, row.units) == (D("0"), D("0"), D("363600"))


def test_only_the_subscriptions_own_plan_charges_apply(catalogue):
    cloud = catalogue.plan("cloud", [CPU])
    maps = catalogue.plan("maps", [("map_loads", "count_agg", "standard", {"amount": "0.5"})])
    sub = catalogue.subscription(cloud)
    # usage of a metric that only the other plan charges for
    catalogue.events(sub, "map_loads", [(T0, None), (NOW, None)])
    catalogue.events(sub, "cpu_seconds", [(T0, 363600)])
    other = catalogue.subscription(maps)
    catalogue.events(other, "cpu_seconds", [(T0, 10**9)])

    rating.rate_open_windows(now=NOW)

    assert set(rated(sub)) == {"cpu_seconds"}
    assert rated(sub)["cpu_seconds"].amount == D("0.0075")
    assert not RatedUsage.objects.filter(subscription=other).exists()
    usage = rating.compute_usage(subscription=sub, window_start=T0, window_end=T1)
    assert [c.charge.metric.code for c in usage.charges] == ["cpu_seconds"]


def test_aggregations_in_sql(catalogue):
    plan = catalogue.plan("agg", [
        ("bytes", "sum_agg", "standard", {"amount": "1"}),
        ("peak", "max_agg", "standard", {"amount": "1"}),
        ("seats", "latest_agg", "standard", {"amount": "1"}),
        ("users", "unique_count_agg", "standard", {"amount": "1"}, "user_id"),
        ("calls", "count_agg", "standard", {"amount": "1"}),
    ])
    sub = catalogue.subscription(plan)
    catalogue.events(sub, "bytes", [(T0, "1.5"), (NOW, "2.25"), (NOW, None)])
    catalogue.events(sub, "peak", [(T0, "7"), (NOW, "3"), (NOW, "7.5")])
    # latest: the newest timestamp wins, a tie goes to the later event
    catalogue.events(sub, "seats", [(NOW, "4"), (T0, "9"), (NOW, "5"), (NOW - timedelta(seconds=1), "8")])
    catalogue.events(sub, "users", [
        (T0, None, {"user_id": "a"}), (T0, None, {"user_id": "b"}), (NOW, None, {"user_id": "a"}),
        (NOW, None, {"other": "x"}),
    ])
    catalogue.events(sub, "calls", [(T0, None)] * 4)
    # another subscription's events never leak in
    other = catalogue.subscription(plan)
    catalogue.events(other, "bytes", [(T0, "100")])

    rating.rate_open_windows(now=NOW)
    rows = rated(sub)
    assert {code: (r.units, r.events_count) for code, r in rows.items()} == {
        "bytes": (D("3.75"), 3),
        "peak": (D("7.5"), 3),
        "seats": (D("5"), 4),
        "users": (D("2"), 4),
        "calls": (D("4"), 4),
    }
    assert rows["bytes"].amount == D("3.75")
    assert rated(other)["bytes"].units == D("100")


@pytest.mark.parametrize(
    "model,props,units,expected",
    [
        ("package", {"amount": "5", "free_units": 100, "package_size": 1000}, "1100", "5"),
        ("package", {"amount": "5", "free_units": 100, "package_size": 1000}, "1101", "10"),
        ("graduated", {"graduated_ranges": [
            {"from_value": 0, "to_value": 10, "per_unit_amount": "1", "flat_amount": "0"},
            {"from_value": 11, "to_value": None, "per_unit_amount": "0.5", "flat_amount": "2"}]}, "10", "10"),
        ("graduated", {"graduated_ranges": [
            {"from_value": 0, "to_value": 10, "per_unit_amount": "1", "flat_amount": "0"},
            {"from_value": 11, "to_value": None, "per_unit_amount": "0.5", "flat_amount": "2"}]}, "11", "12.5"),
        ("volume", {"volume_ranges": [
            {"from_value": 0, "to_value": 100, "per_unit_amount": "2", "flat_amount": "1"},
            {"from_value": 101, "to_value": None, "per_unit_amount": "1", "flat_amount": "0"}]}, "100", "201"),
        ("volume", {"volume_ranges": [
            {"from_value": 0, "to_value": 100, "per_unit_amount": "2", "flat_amount": "1"},
            {"from_value": 101, "to_value": None, "per_unit_amount": "1", "flat_amount": "0"}]}, "101", "101"),
    ],
)
def test_charge_models_from_stored_rows(catalogue, model, props, units, expected):
    plan = catalogue.plan("p", [("m", "sum_agg", model, props)])
    sub = catalogue.subscription(plan)
    catalogue.events(sub, "m", [(T0, units)])
    rating.rate_subscription(subscription_id=sub.id, now=NOW)
    assert rated(sub)["m"].amount == D(expected)


def test_negative_sum_bills_nothing(catalogue):
    plan = catalogue.plan("p", [("m", "sum_agg", "standard", {"amount": "1"})])
    sub = catalogue.subscription(plan)
    catalogue.events(sub, "m", [(T0, "-5"), (T0, "2")])
    usage = rating.compute_usage(subscription=sub, window_start=T0, window_end=T1)
    assert (usage.charges[0].units, usage.charges[0].amount) == (D("-3"), D("0"))


def test_shadow_subscriptions_are_rated_and_stay_shadow(catalogue):
    plan = catalogue.plan("cloud", [CPU])
    sub = catalogue.subscription(plan, mode="shadow")
    catalogue.events(sub, "cpu_seconds", [(T0, 367200)])
    rating.rate_open_windows(now=NOW)
    row = rated(sub)["cpu_seconds"]
    assert row.amount == D("0.015") and row.subscription.mode == "shadow"


def test_pending_subscriptions_are_not_rated(catalogue):
    plan = catalogue.plan("cloud", [CPU])
    sub = catalogue.subscription(plan, status="pending")
    catalogue.events(sub, "cpu_seconds", [(T0, 10**7)])
    assert rating.rate_open_windows(now=NOW).subscriptions == 0


# ----------------------------------------------------------------- windows


def test_ended_window_is_rated_a_final_time_frozen_and_the_next_one_opened(catalogue):
    plan = catalogue.plan("cloud", [CPU])
    sub = catalogue.subscription(plan)
    catalogue.events(sub, "cpu_seconds", [(T0, 363600)])
    rating.rate_open_windows(now=NOW)
    # late-arriving (but accepted) usage of the same window, then usage of the next
    catalogue.events(sub, "cpu_seconds", [(T1 - timedelta(seconds=1), 3600), (T1, 370800)])

    summary = rating.rate_open_windows(now=T1 + timedelta(hours=1))

    assert summary.windows_closed == 1
    march = RatedUsage.objects.get(subscription=sub, window_start=T0)
    april = RatedUsage.objects.get(subscription=sub, window_start=T1)
    assert (march.amount, march.state, march.window_end) == (D("0.015"), "frozen", T1)
    assert (april.amount, april.state, april.window_end) == (D("0.0225"), "open", T2)  # the quota applies per window
    sub.refresh_from_db()
    assert (sub.current_period_start, sub.current_period_end, sub.usage_frozen_until) == (T1, T2, T1)
    assert locks.lock_subscriptions_for_ingest(subscription_ids=[sub.id]) == {sub.id: T1}

    # a frozen window is never rewritten, even if an event slipped in under it
    catalogue.events(sub, "cpu_seconds", [(T0, 10**8)])
    rating.rate_open_windows(now=T1 + timedelta(hours=2))
    march.refresh_from_db()
    assert march.amount == D("0.015")


def test_idle_subscription_catches_up_window_by_window(catalogue):
    plan = catalogue.plan("cloud", [CPU])
    sub = catalogue.subscription(plan)
    catalogue.events(sub, "cpu_seconds", [(T0, 363600), (T1, 367200), (T2, 370800)])
    summary = rating.rate_open_windows(now=T2 + timedelta(days=3))
    assert summary.windows_closed == 2
    rows = {r.window_start: (r.amount, r.state) for r in RatedUsage.objects.filter(subscription=sub)}
    assert rows == {T0: (D("0.0075"), "frozen"), T1: (D("0.015"), "frozen"), T2: (D("0.0225"), "open")}
    sub.refresh_from_db()
    assert sub.current_period_start == T2


def test_terminated_subscription_is_rated_up_to_its_end_then_left_alone(catalogue):
    plan = catalogue.plan("cloud", [CPU])
    end = T0 + timedelta(days=5)
    sub = catalogue.subscription(plan, status="terminated", terminated_at=end)
    catalogue.events(sub, "cpu_seconds", [(T0, 363600), (end - timedelta(seconds=1), 3600), (end, 10**9)])

    summary = rating.rate_open_windows(now=NOW)

    assert (summary.subscriptions, summary.windows_closed) == (1, 1)
    row = RatedUsage.objects.get(subscription=sub)
    assert (row.amount, row.window_end, row.state) == (D("0.015"), end, "frozen")
    sub.refresh_from_db()
    assert (sub.current_period_start, sub.usage_frozen_until) == (T0, end)
    assert locks.lock_subscriptions_for_ingest(subscription_ids=[sub.id]) == {sub.id: end}
    assert rating.rate_open_windows(now=NOW + timedelta(days=1)).subscriptions == 0


def test_subscription_terminated_today_is_rated_up_to_now_until_its_end_passes(catalogue):
    plan = catalogue.plan("cloud", [CPU])
    end = NOW + timedelta(hours=1)
    sub = catalogue.subscription(plan, status="terminated", terminated_at=end)
    catalogue.events(sub, "cpu_seconds", [(T0, 363600)])
    assert rating.rate_open_windows(now=NOW).windows_closed == 0
    assert RatedUsage.objects.get(subscription=sub).state == "open"
    assert rating.rate_open_windows(now=end).windows_closed == 1
    assert RatedUsage.objects.get(subscription=sub).state == "frozen"


def test_a_failing_chunk_leaves_nothing_half_written(catalogue, monkeypatch):
    plan = catalogue.plan("cloud", [CPU])
    sub = catalogue.subscription(plan)
    catalogue.events(sub, "cpu_seconds", [(T0, 367200)])

    def boom(*args, **kwargs):
        raise RuntimeError("worker died")

    monkeypatch.setattr(rating, "_close_windows", boom)
    with pytest.raises(RuntimeError):
        rating.rate_open_windows(now=T1 + timedelta(hours=1))
    # the window's final rating ran before the failure, but was rolled back with it
    assert not RatedUsage.objects.exists()
    sub.refresh_from_db()
    assert (sub.current_period_start, sub.usage_frozen_until) == (T0, None)


# ----------------------------------------------------------------- entry points


def test_rate_usage_command_filters_by_service_and_subscription(catalogue, other_service, capsys):
    from tests.rating.conftest import Catalogue

    plan = catalogue.plan("cloud", [CPU])
    mine = catalogue.subscription(plan, external_id="dep-1")
    also_mine = catalogue.subscription(plan, external_id="dep-2")
    other = Catalogue(other_service)
    theirs = other.subscription(other.plan("cloud", [CPU]), external_id="dep-1")
    for sub in (mine, also_mine, theirs):
        catalogue.events(sub, "cpu_seconds", [(T0, 363600)])

    call_command("rate_usage", "--service", "nexacloud", "--subscription", "dep-1")
    assert set(RatedUsage.objects.values_list("subscription_id", flat=True)) == {mine.id}
    assert "rated 1 subscription(s): 1 created" in capsys.readouterr().out

    call_command("rate_usage", "--service", "nexadesk")
    assert set(RatedUsage.objects.values_list("subscription_id", flat=True)) == {mine.id, theirs.id}

    call_command("rate_usage")
    assert RatedUsage.objects.count() == 3

    with pytest.raises(CommandError, match="unknown service"):
        call_command("rate_usage", "--service", "nope")
    with pytest.raises(CommandError, match="no subscription"):
        call_command("rate_usage", "--subscription", "missing")


def test_small_chunks_cover_every_subscription_once(catalogue):
    plan = catalogue.plan("cloud", [CPU])
    subs = [catalogue.subscription(plan) for _ in range(7)]
    for sub in subs:
        catalogue.events(sub, "cpu_seconds", [(T0, 363600)])
    summary = rating.rate_open_windows(now=NOW, chunk_size=2)
    assert (summary.subscriptions, summary.chunks, summary.rows_created) == (7, 4, 7)


def test_beat_schedule_rates_open_windows_on_the_rating_queue(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["rate-open-windows"]
    assert entry["task"] == "metering.tasks.rate_open_windows"
    assert entry["options"]["queue"] == "rating"
    from billing_project.celery import app

    assert app.amqp.router.route({}, "metering.tasks.rate_open_windows")["queue"].name == "rating"


# ----------------------------------------------------------------- portable path


@pytest.fixture(params=["postgresql-sql", "portable-orm"])
def engine_path(request, monkeypatch):
    """Run a test on the PostgreSQL fast path and on the ORM path (embedded SQLite mode)."""
    if request.param == "portable-orm":
        monkeypatch.setattr(rating, "_use_sql_fast_path", lambda: False)
    return request.param


def test_plan_change_mid_window_zeroes_the_dropped_charge(catalogue, engine_path):
    old = catalogue.plan("old", [CPU])
    new = catalogue.plan("new", [("calls", "count_agg", "standard", {"amount": "0.25"})])
    sub = catalogue.subscription(old)
    catalogue.events(sub, "cpu_seconds", [(T0, 367200)])
    catalogue.events(sub, "calls", [(T0, None), (NOW, None)])
    rating.rate_subscription(subscription_id=sub.id, now=NOW)
    assert {c: r.amount for c, r in rated(sub).items()} == {"cpu_seconds": D("0.015")}

    Subscription.objects.filter(id=sub.id).update(plan=new)
    summary = rating.rate_subscription(subscription_id=sub.id, now=NOW)
    assert (summary.rows_created, summary.rows_updated) == (1, 1)
    rows = rated(sub)
    assert (rows["cpu_seconds"].amount, rows["cpu_seconds"].units) == (D("0"), D("0"))
    assert rows["calls"].amount == D("0.5")
    again = rating.rate_subscription(subscription_id=sub.id, now=NOW)
    assert (again.rows_created, again.rows_updated) == (0, 0)


def test_both_paths_agree_on_aggregation_zero_rule_and_closing(catalogue, engine_path):
    plan = catalogue.plan("agg", [
        ("bytes", "sum_agg", "graduated", {"graduated_ranges": [
            {"from_value": 0, "to_value": 10, "per_unit_amount": "0", "flat_amount": "0"},
            {"from_value": 10, "to_value": None, "per_unit_amount": "0.5", "flat_amount": "1"}]}),
        ("seats", "latest_agg", "volume", {"volume_ranges": [
            {"from_value": 0, "to_value": 5, "per_unit_amount": "2", "flat_amount": "0"},
            {"from_value": 5, "to_value": None, "per_unit_amount": "1", "flat_amount": "0"}]}),
        ("users", "unique_count_agg", "package", {"amount": "3", "package_size": 2, "free_units": 1}, "user_id"),
    ])
    sub = catalogue.subscription(plan)
    catalogue.events(sub, "bytes", [(T0, "4"), (NOW, "5.5")])  # 9.5: inside the free tier
    catalogue.events(sub, "seats", [(T0, "9"), (NOW, "6")])
    catalogue.events(sub, "users", [(T0, None, {"user_id": u}) for u in "abcaa"])
    rating.rate_open_windows(now=NOW)
    rows = rated(sub)
    assert "bytes" not in rows  # zero amount: no row
    assert (rows["seats"].units, rows["seats"].amount) == (D("6"), D("6"))
    assert (rows["users"].units, rows["users"].amount) == (D("3"), D("3"))

    catalogue.events(sub, "bytes", [(NOW, "2")])  # 11.5 -> 1.5 x 0.5 + 1
    rating.rate_open_windows(now=T1)  # the window ends: final rating, freeze, next window
    rows = rated(sub)
    assert rows["bytes"].amount == D("1.75")
    assert {r.state for r in rows.values()} == {"frozen"}
    sub.refresh_from_db()
    assert (sub.current_period_start, sub.current_period_end) == (T1, T2)


def test_shards_split_the_subscriptions_exactly(catalogue):
    import uuid

    bounds = [rating.shard_bounds(i, 3) for i in range(3)]
    assert bounds[0][0] == uuid.UUID(int=0) and bounds[2][1] is None
    assert bounds[0][1] == bounds[1][0] and bounds[1][1] == bounds[2][0]
    with pytest.raises(ValueError):
        rating.shard_bounds(3, 3)

    plan = catalogue.plan("cloud", [CPU])
    subs = [catalogue.subscription(plan) for _ in range(12)]
    for sub in subs:
        catalogue.events(sub, "cpu_seconds", [(T0, 363600)])
    per_shard = [rating.rate_open_windows(now=NOW, shard=(i, 3)).subscriptions for i in range(3)]
    assert sum(per_shard) == 12
    assert RatedUsage.objects.count() == 12
