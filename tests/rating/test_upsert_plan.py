"""The rating upsert stays linear in the chunk whatever PostgreSQL estimates.

The chunk's subscriptions are read by a primary-key range plus ``= ANY`` (for a range
scan), which PostgreSQL estimates at about one row. A join between two of the statement's
CTEs planned on that estimate became a nested loop comparing every row with every row: at
1M subscriptions a re-run took twice as long as the first run (docs/scaling.md). The
statement must only join by probing an index from the chunk's own rows, so no plan of it
may scan a CTE (or an unnested array) once per outer row."""
from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.db import connection, transaction

from metering import rating
from tests.rating.conftest import T0

pytestmark = pytest.mark.django_db

CPU = ("cpu_seconds", "sum_agg", "standard", {"amount": "0.01"})
GB = ("storage_gb", "max_agg", "standard", {"amount": "0.5"})
NOW = T0 + timedelta(days=10)


def rescanned_inner_sides(node: dict, found: list[str]) -> list[str]:
    """The inner sides of nested loops that scan a whole CTE or array per outer row."""
    children = node.get("Plans", [])
    if node["Node Type"] == "Nested Loop":
        inner = [child for child in children if child.get("Parent Relationship") == "Inner"]
        for child in inner:
            if child["Node Type"] in ("CTE Scan", "Function Scan", "Materialize", "Seq Scan") and \
                    child.get("Actual Loops", 1) > 1:
                found.append(f"{child['Node Type']} {child.get('CTE Name') or child.get('Alias', '')}"
                             f" x{child['Actual Loops']}")
    for child in children:
        rescanned_inner_sides(child, found)
    return found


def test_the_upsert_of_a_rerun_probes_indexes_and_never_rescans_a_cte(catalogue):
    plan = catalogue.plan("cloud", [CPU, GB])
    for n in range(40):
        sub = catalogue.subscription(plan)
        catalogue.events(sub, "cpu_seconds", [(T0 + timedelta(hours=h), 100 + n) for h in range(3)])
        catalogue.events(sub, "storage_gb", [(T0 + timedelta(hours=1), 5 + n)])
    assert rating.rate_open_windows(now=NOW).rows_created == 80

    captured: list[tuple[str, dict]] = []

    def capture(execute, sql, params, many, context):
        if sql.startswith("/* rating: upsert */"):
            captured.append((sql, params))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(capture):
        summary = rating.rate_open_windows(now=NOW + timedelta(minutes=1))
    assert (summary.rows_created, summary.rows_updated) == (0, 0)
    assert captured, "the re-run used the SQL upsert"

    sql, params = captured[0]
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql, params)
            plan_json = cursor.fetchone()[0]
        transaction.set_rollback(True)
    plan_tree = (json.loads(plan_json) if isinstance(plan_json, str) else plan_json)[0]["Plan"]
    assert rescanned_inner_sides(plan_tree, []) == []
