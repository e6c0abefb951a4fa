from __future__ import annotations

from typing import Any

from .errors import BadRequest


def require_root(request, key: str, *, kind: type = dict) -> Any:
    """Lago wraps every write in a root key (``{"customer": {...}}``); missing -> 400."""
    data = request.data
    value = data.get(key) if isinstance(data, dict) else None
    if not value or not isinstance(value, kind):
        raise BadRequest(f"param is missing or the value is empty: {key}")
    return value
