"""Lago list pagination: ``page``/``per_page`` in, ``meta`` out."""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.db.models import QuerySet

from .errors import ErrorCode, ValidationFailed
from .params import Query


def _positive_int(raw: str | None, name: str, *, default: int, maximum: int | None = None) -> int:
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValidationFailed({name: [ErrorCode.VALUE_IS_INVALID]}) from None
    if value < 1 or (maximum is not None and value > maximum):
        raise ValidationFailed({name: [ErrorCode.VALUE_IS_OUT_OF_RANGE]})
    return value


def paginate(query: Query, queryset: QuerySet | Sequence[Any]) -> tuple[list[Any], dict[str, Any]]:
    """One page of ``queryset`` (or of a list already built); the operation declares
    ``billing_kit.params.PAGINATION``."""
    page = _positive_int(query.get("page"), "page", default=1)
    per_page = _positive_int(
        query.get("per_page"), "per_page",
        default=settings.API_PAGE_SIZE_DEFAULT, maximum=settings.API_PAGE_SIZE_MAX,
    )
    total_count = queryset.count() if isinstance(queryset, QuerySet) else len(queryset)
    total_pages = math.ceil(total_count / per_page)
    offset = (page - 1) * per_page
    items = list(queryset[offset:offset + per_page]) if offset < total_count else []
    meta = {
        "current_page": page,
        "next_page": page + 1 if page < total_pages else None,
        "prev_page": page - 1 if page > 1 else None,
        "total_pages": total_pages,
        "total_count": total_count,
    }
    return items, meta
