"""The one partial-update helper (HackSoft's ``model_update``): set only what changed."""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

from django.db import models

M = TypeVar("M", bound=models.Model)


def model_update(*, instance: M, data: Mapping[str, Any], fields: Iterable[str] | None = None,
                 save: bool = True) -> tuple[M, list[str]]:
    """Assign ``data[field]`` for each of ``fields`` (default: every key of ``data``) whose
    value differs, and save just those columns (plus ``updated_at`` when the model has one).

    Returns the instance and the names of the fields that changed (empty: nothing saved).
    """
    changed = [field for field in (data if fields is None else fields)
               if field in data and getattr(instance, field) != data[field]]
    for field in changed:
        setattr(instance, field, data[field])
    if changed and save:
        auto = [f.name for f in instance._meta.concrete_fields if getattr(f, "auto_now", False)]
        instance.save(update_fields=[*changed, *(f for f in auto if f not in changed)])
    return instance, changed
