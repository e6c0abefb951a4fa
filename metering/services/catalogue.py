"""Writes of the metering catalogue: billable metrics, plans and their charges.

Every function takes the calling ``service`` (or one of its objects) and only ever
touches that service's rows. Failures are raised as the API kit's domain errors.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from uuid import UUID

from django.db import IntegrityError, transaction
from django.db.models import ProtectedError

from billing_kit.errors import ErrorCode, NotAllowed, NotFound, ValidationFailed
from billing_kit.updates import model_update
from identity.models import Service
from metering.models import (
    CLOSED_SUBSCRIPTION_STATUSES,
    BillableMetric,
    Charge,
    ChargeTier,
    Plan,
    RatedUsage,
    Subscription,
)
from metering.pricing import ChargePropertiesInvalid, charge_columns, parse_charge_properties


# --------------------------------------------------------------------------- billable metrics


def _check_metric(*, aggregation_type: str, field_name: str, recurring: bool) -> None:
    errors: dict[str, list[str]] = {}
    if aggregation_type != "count_agg" and not field_name:
        errors["field_name"] = [ErrorCode.VALUE_IS_MANDATORY]
    if recurring and aggregation_type in ("count_agg", "max_agg", "latest_agg"):
        errors["recurring"] = [ErrorCode.NOT_COMPATIBLE_WITH_AGGREGATION_TYPE]
    if errors:
        raise ValidationFailed(errors)


def create_billable_metric(*, service: Service, data: dict[str, Any]) -> BillableMetric:
    field_name = "" if data["aggregation_type"] == "count_agg" else (data.get("field_name") or "")
    recurring = bool(data.get("recurring") or False)
    _check_metric(aggregation_type=data["aggregation_type"], field_name=field_name, recurring=recurring)
    try:
        with transaction.atomic():
            return BillableMetric.objects.create(
                service=service, code=data["code"], name=data["name"],
                description=data.get("description") or "", aggregation_type=data["aggregation_type"],
                field_name=field_name, recurring=recurring,
            )
    except IntegrityError:
        raise ValidationFailed({"code": [ErrorCode.VALUE_ALREADY_EXIST]}) from None


def update_billable_metric(*, metric: BillableMetric, data: dict[str, Any]) -> BillableMetric:
    changes = {field: data[field] for field in ("name", "code", "aggregation_type", "recurring")
               if data.get(field) is not None}
    changes.update({field: data[field] or "" for field in ("description", "field_name") if field in data})
    if changes.get("aggregation_type", metric.aggregation_type) == "count_agg":
        changes["field_name"] = ""
    # The metric as it would be saved is checked before anything is assigned.
    _check_metric(aggregation_type=changes.get("aggregation_type", metric.aggregation_type),
                  field_name=changes.get("field_name", metric.field_name),
                  recurring=changes.get("recurring", metric.recurring))
    try:
        with transaction.atomic():
            model_update(instance=metric, data=changes)
    except IntegrityError:
        raise ValidationFailed({"code": [ErrorCode.VALUE_ALREADY_EXIST]}) from None
    return metric


@transaction.atomic
def delete_billable_metric(*, metric: BillableMetric) -> None:
    """Lago deletes the metric with its charges; here only while nothing was billed with it."""
    charges = Charge.objects.filter(metric=metric)
    if (RatedUsage.objects.filter(charge__in=charges).exists()
            or Subscription.objects.filter(plan__charges__metric=metric)
            .exclude(status__in=CLOSED_SUBSCRIPTION_STATUSES).exists()):
        raise NotAllowed(ErrorCode.BILLABLE_METRIC_IN_USE)
    charges.delete()
    metric.delete()


# --------------------------------------------------------------------------- plans


@dataclass(frozen=True)
class ChargeSpec:
    metric: BillableMetric
    fields: dict[str, Any]
    tiers: list[dict[str, Any]]


def _resolve_charges(*, service: Service, charges: list[dict[str, Any]]) -> list[ChargeSpec]:
    """Validate Lago charges: metrics of this service only, properties via metering.pricing."""
    wanted_ids: set[UUID] = set()
    wanted_codes: set[str] = set()
    for charge in charges:
        if charge.get("billable_metric_id"):
            wanted_ids.add(charge["billable_metric_id"])
        elif charge.get("billable_metric_code"):
            wanted_codes.add(charge["billable_metric_code"])
        else:
            raise ValidationFailed({"billable_metric_id": [ErrorCode.VALUE_IS_MANDATORY]})
    metrics = BillableMetric.objects.filter(service=service)
    by_id = {m.id: m for m in metrics.filter(id__in=wanted_ids)} if wanted_ids else {}
    by_code = {m.code: m for m in metrics.filter(code__in=wanted_codes)} if wanted_codes else {}
    specs: list[ChargeSpec] = []
    errors: dict[str, list[str]] = {}
    seen: set[UUID] = set()
    for charge in charges:
        # A charge without billable_metric_id has a billable_metric_code (checked above).
        metric = (by_id.get(charge["billable_metric_id"]) if charge.get("billable_metric_id")
                  else by_code.get(charge["billable_metric_code"]))
        if metric is None:
            raise NotFound(ErrorCode.BILLABLE_METRIC_NOT_FOUND)
        if metric.id in seen:
            errors.setdefault("charges", []).append(ErrorCode.VALUE_ALREADY_EXIST)
            continue
        seen.add(metric.id)
        if charge.get("pay_in_advance"):
            errors.setdefault("pay_in_advance", []).append(ErrorCode.NOT_SUPPORTED)
        try:
            terms = parse_charge_properties(charge_model=charge.get("charge_model"),
                                            properties=charge.get("properties") or {})
        except ChargePropertiesInvalid as exc:
            for field, codes in exc.error_details.items():
                errors.setdefault(field, []).extend(codes)
            continue
        fields, tiers = charge_columns(terms)
        fields["invoice_display_name"] = charge.get("invoice_display_name") or ""
        specs.append(ChargeSpec(metric=metric, fields=fields, tiers=tiers))
    if errors:
        raise ValidationFailed(errors)
    return specs


def _write_charges(*, plan: Plan, specs: list[ChargeSpec], replace: bool) -> None:
    existing = {charge.metric_id: charge for charge in plan.charges.all()}
    for spec in specs:
        charge = existing.pop(spec.metric.id, None)
        if charge is None:
            charge = Charge.objects.create(plan=plan, metric=spec.metric, **spec.fields)
        else:
            model_update(instance=charge, data=spec.fields)
            charge.tiers.all().delete()
        ChargeTier.objects.bulk_create([ChargeTier(charge=charge, **tier) for tier in spec.tiers])
    if replace:
        for charge in existing.values():
            try:
                with transaction.atomic():
                    charge.delete()
            except ProtectedError:
                raise ValidationFailed({"charges": [ErrorCode.CHARGE_IN_USE]}) from None


def _plan_amount(data: dict[str, Any]) -> Decimal:
    return Decimal(data["amount_cents"]) / 100


def create_plan(*, service: Service, data: dict[str, Any]) -> Plan:
    specs = _resolve_charges(service=service, charges=data.get("charges") or [])
    try:
        with transaction.atomic():
            plan = Plan.objects.create(
                service=service, code=data["code"], name=data["name"],
                invoice_display_name=data.get("invoice_display_name") or "",
                description=data.get("description") or "", interval=data["interval"],
                amount=_plan_amount(data), amount_currency=data["amount_currency"],
                pay_in_advance=bool(data.get("pay_in_advance") or False),
                trial_period=data.get("trial_period") or 0,  # lifecycle engineer (#12): trials
            )
            _write_charges(plan=plan, specs=specs, replace=False)
    except IntegrityError:
        raise ValidationFailed({"code": [ErrorCode.VALUE_ALREADY_EXIST]}) from None
    return plan


def update_plan(*, plan: Plan, data: dict[str, Any]) -> Plan:
    """Updates the given fields; ``charges``, when sent, is the plan's complete charge list."""
    specs = (_resolve_charges(service=plan.service, charges=data["charges"])
             if data.get("charges") is not None else None)
    changes = {field: data[field] for field in ("name", "code", "interval", "amount_currency", "pay_in_advance",
                                                "trial_period")  # trial_period: lifecycle engineer (#12)
               if data.get(field) is not None}
    changes.update({field: data[field] or "" for field in ("description", "invoice_display_name")
                    if field in data})
    if data.get("amount_cents") is not None:
        changes["amount"] = _plan_amount(data)
    try:
        with transaction.atomic():
            model_update(instance=plan, data=changes)
            if specs is not None:
                _write_charges(plan=plan, specs=specs, replace=True)
    except IntegrityError:
        raise ValidationFailed({"code": [ErrorCode.VALUE_ALREADY_EXIST]}) from None
    return plan


@transaction.atomic
def delete_plan(*, plan: Plan) -> None:
    """Refused while any subscription (even a closed one, whose bills reference it) uses it."""
    if Subscription.objects.filter(plan=plan).exists():
        raise NotAllowed(ErrorCode.PLAN_IN_USE)
    plan.delete()
