"""CSV cells that a spreadsheet opens as data, never as a formula (CSV injection, OWASP).

A text cell starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is run as
a formula by Excel, LibreOffice and Google Sheets (``=HYPERLINK(...)``, DDE payloads);
such a cell is written with a leading apostrophe, which spreadsheets show as text. The
values a client chose (an external subscription id, a name) are text; numbers we
computed (``Decimal``, ``int``) stay numbers, negative ones included.
"""
from __future__ import annotations

from decimal import Decimal

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> object:
    if value is None or isinstance(value, (Decimal, int)):
        return "" if value is None else value
    text = str(value)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def csv_row(values: list[object]) -> list[object]:
    return [csv_cell(value) for value in values]
