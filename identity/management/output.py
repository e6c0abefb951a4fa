"""How the key commands print a newly issued key (shown once)."""
from __future__ import annotations

import json

from django.core.management.base import BaseCommand

from identity.models import Service


def print_issued_key(command: BaseCommand, *, service: Service, plaintext: str, as_json: bool) -> None:
    if as_json:
        command.stdout.write(json.dumps({"service": service.code, "api_key": plaintext}))
        return
    command.stdout.write(f"Service: {service.code}")
    command.stdout.write(f"API key (shown once, store it now): {plaintext}")
