"""A faster end for transactional tests on PostgreSQL, with the same result as Django's flush.

After every ``transactional_db`` / ``live_server`` test Django runs ``manage.py flush``: one
``TRUNCATE`` of every table (PostgreSQL gives each table and index a new file: 1–3 s on a
busy machine), then the ``post_migrate`` signal, which inserts every content type and
permission again. Most such tests leave rows in a handful of small tables, so this
``_fixture_teardown`` instead

- finds, in one query, the model tables that hold rows;
- ``DELETE``s them in one transaction (every foreign key is ``DEFERRABLE``, checked at
  commit when all are empty; the suite asserts there is no other kind and no trigger that
  fires on DELETE — the Odoo change log's triggers fire on INSERT and UPDATE only);
- keeps ``django_content_type`` and ``auth_permission`` when they are exactly what
  ``post_migrate`` made (same count and largest id as after the last real flush), else
  empties them and sends ``post_migrate`` as flush does.

Sequences are left as they are, as flush (``reset_sequences=False``) leaves them. Anything
unusual (another backend, ``available_apps``, ``serialized_rollback``, ``reset_sequences``)
gets Django's own flush. The first transactional test of a run always does, and its result
is the reference for the content types and permissions.
"""
from __future__ import annotations

import os

from django.db import connections, transaction
from django.test import TransactionTestCase

_django_fixture_teardown = TransactionTestCase._fixture_teardown
# Tables post_migrate fills (django.contrib.contenttypes, django.contrib.auth).
REFERENCE_TABLES = ("django_content_type", "auth_permission")
# Per database alias: (model tables, reference state after the last real flush).
_state: dict[str, tuple[list[str], tuple[tuple[int, int], ...]]] = {}


def _quote(connection, name: str) -> str:
    return connection.ops.quote_name(name)


def _reference_state(cursor, connection) -> tuple[tuple[int, int], ...]:
    state = []
    for table in REFERENCE_TABLES:
        cursor.execute(f"SELECT count(*), COALESCE(max(id), 0) FROM {_quote(connection, table)}")
        state.append(tuple(cursor.fetchone()))
    return tuple(state)


def _model_tables(connection) -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND NOT condeferrable"
            " AND connamespace = 'public'::regnamespace")
        (immediate_fks,) = cursor.fetchone()
        # tgtype bit 3 (8) is TRIGGER_TYPE_DELETE (PostgreSQL's pg_trigger.h)
        cursor.execute("SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid"
                       " WHERE NOT t.tgisinternal AND c.relnamespace = 'public'::regnamespace"
                       " AND (t.tgtype & 8) <> 0")
        (triggers,) = cursor.fetchone()
    if immediate_fks or triggers:
        raise RuntimeError(
            f"tests/fast_flush.py relies on every foreign key being DEFERRABLE and on no DELETE trigger: found "
            f"{immediate_fks} immediate foreign keys and {triggers} DELETE triggers (make them deferrable, or "
            "extend the cleanup)")
    return sorted(connection.introspection.django_table_names(only_existing=True, include_views=False))


def _fast_flush(connection, alias: str) -> bool:
    """Empty the test database as flush would; False when a real flush is needed."""
    if alias not in _state:
        return False
    tables, reference = _state[alias]
    q = lambda name: _quote(connection, name)  # noqa: E731
    probe = " UNION ALL ".join(f"SELECT {i} WHERE EXISTS (SELECT FROM {q(t)})" for i, t in enumerate(tables))
    with transaction.atomic(using=alias), connection.cursor() as cursor:
        cursor.execute(probe)
        filled = [tables[i] for (i,) in cursor.fetchall()]
        if _reference_state(cursor, connection) != reference:
            return False  # content types or permissions changed: flush all, post_migrate refills them
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")
        for table in filled:
            if table not in REFERENCE_TABLES:
                cursor.execute(f"DELETE FROM {q(table)}")
    return True


def _fixture_teardown(self: TransactionTestCase) -> None:
    # available_apps and serialized_rollback change what Django's flush does: left to it.
    plain = self.available_apps is None and not self.serialized_rollback
    aliases = list(self._databases_names(include_mirrors=False))
    postgresql = all(connections[alias].vendor == "postgresql" for alias in aliases)
    if plain and postgresql and all(_fast_flush(connections[alias], alias) for alias in aliases):
        return
    _django_fixture_teardown(self)
    if plain and postgresql:
        for alias in aliases:
            connection = connections[alias]
            tables = _state[alias][0] if alias in _state else _model_tables(connection)
            with connection.cursor() as cursor:
                _state[alias] = (tables, _reference_state(cursor, connection))


def install() -> None:
    """``FUSION_BILLING_TEST_FLUSH=django`` keeps Django's own flush (to compare)."""
    if os.environ.get("FUSION_BILLING_TEST_FLUSH") == "django":
        return
    TransactionTestCase._fixture_teardown = _fixture_teardown  # type: ignore[method-assign]
