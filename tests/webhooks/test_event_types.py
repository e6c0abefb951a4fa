"""``webhooks.event_types.EMITTED`` lists every type the code records, read from the source.

Types are recorded by ``webhooks.services.record_event(webhook_type=...)`` and by thin
wrappers around it (``metering.services._emit_subscription(subscription, "...")``); some
callers pick the type elsewhere and pass a variable (``odoo_bridge.pull._events``). So the
scan checks both the literals written at those call sites and any literal anywhere in
product code that is one of Lago's documented type names.
"""
from __future__ import annotations

import ast
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from webhooks.event_types import ACCEPTED, EMITTED, LAGO_TYPES, WEBHOOK_TYPE_PATTERN, WebhookType

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["root_packages"]
# Where each recorder takes the type: (keyword, positional index).
RECORDERS = {"record_event": ("webhook_type", None), "_emit_subscription": ("webhook_type", 1)}


def _product_modules() -> Iterator[tuple[Path, ast.Module]]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).parts
            if "migrations" in parts or "testing" in parts:
                continue
            yield path, ast.parse(path.read_text(), filename=str(path))


def _called_name(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Name):
        return call.func.id
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return None


def _type_argument(call: ast.Call, keyword: str, index: int | None) -> ast.expr | None:
    for kw in call.keywords:
        if kw.arg == keyword:
            return kw.value
    if index is not None and len(call.args) > index:
        return call.args[index]
    return None


def _string_literals(node: ast.AST) -> list[str]:
    return [n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def _recorder_calls() -> list[tuple[str, ast.expr]]:
    """(where, type argument) of every call to a recorder."""
    found = []
    for path, tree in _product_modules():
        for node in ast.walk(tree):
            name = _called_name(node) if isinstance(node, ast.Call) else None
            if name in RECORDERS:
                argument = _type_argument(node, *RECORDERS[name])
                if argument is not None:
                    found.append((f"{path.relative_to(ROOT)}:{node.lineno}", argument))
    return found


def test_the_scan_finds_every_area_that_records_events():
    files = {where.split(":")[0] for where, _ in _recorder_calls()}
    assert files >= {"identity/services.py", "metering/services/subscriptions.py", "odoo_bridge/pull.py"}


def test_every_literal_passed_to_a_recorder_is_emitted():
    unknown = [(where, literal) for where, argument in _recorder_calls()
               for literal in _string_literals(argument) if literal not in EMITTED]
    assert unknown == []


def test_every_lago_type_name_in_product_code_is_emitted():
    own = ROOT / "webhooks" / "event_types.py"
    unknown = [
        (f"{path.relative_to(ROOT)}:{node.lineno}", node.value)
        for path, tree in _product_modules() if path != own
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and node.value in LAGO_TYPES and node.value not in EMITTED
    ]
    assert unknown == []


@pytest.mark.parametrize("webhook_type", EMITTED)
def test_emitted_types_are_well_formed_and_accepted(webhook_type):
    assert WEBHOOK_TYPE_PATTERN.fullmatch(webhook_type) and webhook_type in ACCEPTED


def test_emitted_is_exactly_webhook_type():
    assert EMITTED == tuple(WebhookType) and "subscription.canceled" in EMITTED
