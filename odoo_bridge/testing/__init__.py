"""Test doubles for the Odoo bridge: a protocol-faithful fake Odoo server."""

from .server import Fault, FakeOdoo

__all__ = ["FakeOdoo", "Fault"]
