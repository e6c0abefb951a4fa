"""Writes of the metering catalogue: billable metrics, plans and their charges.

Every function takes the calling ``service`` (or one of its objects) and only ever
touches that service's rows. Failures are raised as the API kit's domain errors.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from django.db import IntegrityError, transaction
from django.db.models import F, ProtectedError

from billing_kit.errors import ErrorCode, NotAllowed, NotFound, ValidationFailed
from billing_kit.formatting import from_cents, to_cents
from billing_kit.updates import model_update
from identity.models import AccountLink, Service
from metering import plan_fees, windows
from metering.models import (
    CLOSED_SUBSCRIPTION_STATUSES,
    BillableMetric,
    Charge,
    ChargeTier,
    MinimumCommitment,
    Plan,
    RatedUsage,
    Subscription,
    WindowTerms,
)
from metering.pricing import (
    ChargePropertiesInvalid,
    charge_columns,
    parse_charge_properties,
    render_charge_properties,
)
from metering.renderers import render_plan
from webhooks.event_types import WebhookType
from webhooks.services import record_event


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
                rounding_function=data.get("rounding_function") or "",
                rounding_precision=data.get("rounding_precision"),
            )
    except IntegrityError:
        raise ValidationFailed({"code": [ErrorCode.VALUE_ALREADY_EXIST]}) from None


# What a window's units are made of: frozen once a plan with subscriptions charges the metric.
METRIC_LOCKED_FIELDS = ("code", "aggregation_type", "field_name", "recurring", "rounding_function",
                        "rounding_precision")


def metric_is_attached(metric: BillableMetric) -> bool:
    """Lago's ``BillableMetric#attached_to_subscriptions?``: a plan charging it has (or had)
    a subscription, whatever its status."""
    return Subscription.objects.filter(plan__charges__metric=metric).exists()


def _refuse_locked_changes(*, instance: Any, changes: dict[str, Any], fields: tuple[str, ...], code: str) -> None:
    """422 ``{field: [code]}`` for each locked field whose value would change."""
    locked = {field: [code] for field in fields
              if field in changes and changes[field] != getattr(instance, field)}
    if locked:
        raise ValidationFailed(locked)


def update_billable_metric(*, metric: BillableMetric, data: dict[str, Any]) -> BillableMetric:
    changes = {field: data[field] for field in ("name", "code", "aggregation_type", "recurring")
               if data.get(field) is not None}
    changes.update({field: data[field] or "" for field in ("description", "field_name") if field in data})
    if "rounding_function" in data:
        changes["rounding_function"] = data["rounding_function"] or ""
    if "rounding_precision" in data:
        changes["rounding_precision"] = data["rounding_precision"]
    if changes.get("aggregation_type", metric.aggregation_type) == "count_agg":
        changes["field_name"] = ""
    if metric_is_attached(metric):
        # Changing them would re-aggregate the open window (and every later one) differently.
        _refuse_locked_changes(instance=metric, changes=changes, fields=METRIC_LOCKED_FIELDS,
                               code=ErrorCode.BILLABLE_METRIC_LOCKED)
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


def _resolve_charges(*, service: Service, charges: list[dict[str, Any]], currency: str) -> list[ChargeSpec]:
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
        if charge.get("code") and charge["code"] != metric.code:
            # A charge's code is its metric's code here (one charge per metric and plan).
            errors.setdefault("code", []).append(ErrorCode.NOT_SUPPORTED)
        try:
            terms = parse_charge_properties(charge_model=charge.get("charge_model"),
                                            properties=charge.get("properties") or {})
        except ChargePropertiesInvalid as exc:
            for field, codes in exc.error_details.items():
                errors.setdefault(field, []).extend(codes)
            continue
        fields, tiers = charge_columns(terms)
        fields["invoice_display_name"] = charge.get("invoice_display_name") or ""
        fields["min_amount"] = from_cents(charge.get("min_amount_cents") or 0, currency)
        specs.append(ChargeSpec(metric=metric, fields=fields, tiers=tiers))
    if errors:
        raise ValidationFailed(errors)
    return specs


def _write_charges(*, plan: Plan, specs: list[ChargeSpec], replace: bool) -> list[Charge]:
    """Writes the charges; returns the ones created (not there before)."""
    existing = {charge.metric_id: charge for charge in plan.charges.all()}
    created = []
    for spec in specs:
        charge = existing.pop(spec.metric.id, None)
        if charge is None:
            charge = Charge.objects.create(plan=plan, metric=spec.metric, **spec.fields)
            created.append(charge)
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
    return created


def _plan_amount(data: dict[str, Any], currency: str) -> Decimal:
    return from_cents(data["amount_cents"], currency)


def _write_minimum_commitment(*, plan: Plan, data: dict[str, Any] | None) -> None:
    """Lago's ``minimum_commitment`` of a plan: sent non-empty, it creates the plan's (with
    ``amount_cents``) or updates the fields sent; null or ``{}`` removes it."""
    existing = MinimumCommitment.objects.filter(plan=plan).first()
    if not data:
        if existing is not None:
            existing.delete()
        return
    changes: dict[str, Any] = {}
    if data.get("amount_cents") is not None:
        changes["amount"] = from_cents(data["amount_cents"], plan.amount_currency)
    if "invoice_display_name" in data:
        changes["invoice_display_name"] = data["invoice_display_name"] or ""
    if existing is None:
        if "amount" not in changes:
            raise ValidationFailed({"minimum_commitment": {"amount_cents": [ErrorCode.VALUE_IS_MANDATORY]}})
        MinimumCommitment.objects.create(plan=plan, **changes)
    elif changes:
        model_update(instance=existing, data=changes)


def commitment_amount(plan: Plan) -> Decimal | None:
    """The plan's minimum commitment per period (major units), None without one."""
    return MinimumCommitment.objects.filter(plan=plan).values_list("amount", flat=True).first()


def create_plan(*, service: Service, data: dict[str, Any]) -> Plan:
    currency = data["amount_currency"]
    specs = _resolve_charges(service=service, charges=data.get("charges") or [], currency=currency)
    try:
        with transaction.atomic():
            plan = Plan.objects.create(
                service=service, code=data["code"], name=data["name"],
                invoice_display_name=data.get("invoice_display_name") or "",
                description=data.get("description") or "", interval=data["interval"],
                amount=_plan_amount(data, currency), amount_currency=currency,
                pay_in_advance=bool(data.get("pay_in_advance") or False),
                trial_period=data.get("trial_period") or 0,  # lifecycle engineer (#12): trials
                bill_charges_monthly=bool(data.get("bill_charges_monthly")) and data["interval"] == "yearly",
                metadata=None if data.get("metadata") is None else check_metadata(data["metadata"]),
            )
            _write_charges(plan=plan, specs=specs, replace=False)
            _write_minimum_commitment(plan=plan, data=data.get("minimum_commitment"))
            _refuse_commitment_billed_monthly(plan)
    except IntegrityError:
        raise ValidationFailed({"code": [ErrorCode.VALUE_ALREADY_EXIST]}) from None
    return plan


# What defines a plan's periods and money: frozen once the plan has a subscription (Lago's
# Plans::UpdateService keeps them unchanged when ``plan.attached_to_subscriptions?``).
PLAN_LOCKED_FIELDS = ("code", "interval", "amount_currency", "pay_in_advance", "bill_charges_monthly")


def _refuse_commitment_billed_monthly(plan: Plan) -> None:
    """A minimum commitment on a plan billing charges monthly is not built (Lago reconciles it
    over the year across the monthly invoices): 422 ``not_supported`` rather than a wrong true-up."""
    if plan.bill_charges_monthly and MinimumCommitment.objects.filter(plan=plan).exists():
        raise ValidationFailed({"minimum_commitment": [ErrorCode.NOT_SUPPORTED]})


def plan_is_attached(plan: Plan) -> bool:
    """Lago's ``Plan#attached_to_subscriptions?``: any subscription, whatever its status."""
    return Subscription.objects.filter(plan=plan).exists()


def update_plan(*, plan: Plan, data: dict[str, Any]) -> Plan:
    """Updates the given fields; ``charges``, when sent, is the plan's complete charge list.

    On a plan with subscriptions, ``PLAN_LOCKED_FIELDS`` and each kept charge's
    ``charge_model`` are refused (422 ``plan_locked``), and price changes (``amount_cents``,
    charge properties, ``min_amount_cents``, added charges) apply from each subscription's
    NEXT window: the open window keeps the terms it started with (``WindowTerms``).
    """
    changes = {field: data[field] for field in ("name", "code", "interval", "amount_currency", "pay_in_advance",
                                                "trial_period")
               if data.get(field) is not None}
    currency = changes.get("amount_currency", plan.amount_currency)
    specs = (_resolve_charges(service=plan.service, charges=data["charges"], currency=currency)
             if data.get("charges") is not None else None)
    changes.update({field: data[field] or "" for field in ("description", "invoice_display_name")
                    if field in data})
    if data.get("amount_cents") is not None:
        changes["amount"] = _plan_amount(data, currency)
    if changes.get("interval", plan.interval) != "yearly":
        if plan.bill_charges_monthly:
            changes["bill_charges_monthly"] = False  # Lago: only yearly plans bill charges monthly
    elif data.get("bill_charges_monthly") is not None:
        changes["bill_charges_monthly"] = bool(data["bill_charges_monthly"])
    if "metadata" in data:  # Lago replaces the plan's metadata with what is sent
        changes["metadata"] = None if data["metadata"] is None else check_metadata(data["metadata"])
    attached = plan_is_attached(plan)
    if attached:
        _refuse_locked_changes(instance=plan, changes=changes, fields=PLAN_LOCKED_FIELDS,
                               code=ErrorCode.PLAN_LOCKED)
        if specs is not None:
            models_by_metric = {c.metric_id: c.charge_model for c in plan.charges.all()}
            if any(spec.metric.id in models_by_metric
                   and models_by_metric[spec.metric.id] != spec.fields["charge_model"] for spec in specs):
                raise ValidationFailed({"charge_model": [ErrorCode.PLAN_LOCKED]})
    try:
        with transaction.atomic():
            before = _price_terms(plan) if attached else None
            old_amount = plan.amount
            model_update(instance=plan, data=changes)
            created = []
            if specs is not None:
                created = _write_charges(plan=plan, specs=specs, replace=True)
            if "minimum_commitment" in data:
                _write_minimum_commitment(plan=plan, data=data["minimum_commitment"])
            _refuse_commitment_billed_monthly(plan)
            if before is not None:
                _keep_open_window_terms(plan, before, created)
            if attached and plan.amount != old_amount:
                _follow_plan_amount(plan, old_amount)
    except IntegrityError:
        raise ValidationFailed({"code": [ErrorCode.VALUE_ALREADY_EXIST]}) from None
    return plan


# --------------------------------------------------------------------------- plan charges
# Lago's /plans/{code}/charges: one charge changes, under the same rules as a PUT of the
# plan with its complete charge list (which is how they are applied).


def _charge_as_input(charge: Charge) -> dict[str, Any]:
    return {"billable_metric_id": charge.metric_id, "charge_model": charge.charge_model,
            "properties": render_charge_properties(charge), "invoice_display_name": charge.invoice_display_name,
            "min_amount_cents": to_cents(charge.min_amount, charge.plan.amount_currency)}


def _plan_charges(plan: Plan) -> list[Charge]:
    return list(plan.charges.select_related("metric", "plan").prefetch_related("tiers").order_by("created_at", "id"))


def plan_charge(*, plan: Plan, code: str) -> Charge:
    """A charge's code is its metric's code (one charge per metric and plan)."""
    charge = plan.charges.select_related("metric", "plan").filter(metric__code=code).first()
    if charge is None:
        raise NotFound(ErrorCode.CHARGE_NOT_FOUND)
    return charge


def create_plan_charge(*, plan: Plan, data: dict[str, Any]) -> Charge:
    charges = _plan_charges(plan)
    update_plan(plan=plan, data={"charges": [*(_charge_as_input(c) for c in charges), data]})
    specs = _resolve_charges(service=plan.service, charges=[data], currency=plan.amount_currency)
    return plan_charge(plan=plan, code=specs[0].metric.code)


def update_plan_charge(*, plan: Plan, charge: Charge, data: dict[str, Any]) -> Charge:
    """The charge's fields sent replace its own; its metric cannot change (it is its code)."""
    if (data.get("billable_metric_id") not in (None, charge.metric_id)
            or data.get("billable_metric_code") not in (None, charge.metric.code)):
        raise ValidationFailed({"billable_metric_id": [ErrorCode.VALUE_IS_INVALID]})
    changed = {**_charge_as_input(charge),
               **{k: v for k, v in data.items() if v is not None and k not in ("billable_metric_id",
                                                                               "billable_metric_code")}}
    update_plan(plan=plan, data={"charges": [changed if c.pk == charge.pk else _charge_as_input(c)
                                             for c in _plan_charges(plan)]})
    return plan_charge(plan=plan, code=charge.metric.code)


def delete_plan_charge(*, plan: Plan, charge: Charge) -> None:
    """422 ``charge_in_use`` once usage was rated with it (as a PUT without it)."""
    update_plan(plan=plan, data={"charges": [_charge_as_input(c) for c in _plan_charges(plan) if c.pk != charge.pk]})


# --------------------------------------------------------------------------- window terms


def charge_terms_snapshot(charge: Charge) -> dict[str, Any]:
    """The price terms of ``charge`` as JSON (``WindowTerms.terms``; rating reads them back)."""
    return {"charge_model": charge.charge_model, "properties": render_charge_properties(charge),
            "min_amount": str(charge.min_amount)}


def _price_terms(plan: Plan) -> dict[Any, dict[str, Any]]:
    """Plan amount and minimum commitment (key None) and each charge's terms (key charge
    id), as snapshots."""
    commitment = commitment_amount(plan)
    terms: dict[Any, dict[str, Any]] = {None: {"amount": str(plan.amount),
                                               "minimum_commitment": None if commitment is None else str(commitment)}}
    for charge in Charge.objects.filter(plan=plan).prefetch_related("tiers"):
        terms[charge.id] = charge_terms_snapshot(charge)
    return terms


def _keep_open_window_terms(plan: Plan, before: dict[Any, dict[str, Any]], created: list[Charge]) -> None:
    """For every subscription of ``plan`` with an open window, keep the window's terms of
    each price that changed (first change of a window wins)."""
    after = _price_terms(plan)
    changed = {key: terms for key, terms in before.items()
               if key in after and after[key] != terms}
    changed.update({charge.id: {"absent": True} for charge in created})
    if not changed:
        return
    open_windows = (Subscription.objects.filter(plan=plan, current_period_start__isnull=False)
                    .exclude(status__in=CLOSED_SUBSCRIPTION_STATUSES, usage_frozen_until__isnull=False,
                             usage_frozen_until__gte=F("terminated_at"))
                    .values_list("id", "current_period_start", "flat_amount", "billing_anchor", "started_at",
                                 "billing_timezone"))
    old_amount = Decimal(before[None]["amount"])
    # The plan amount is kept only for subscriptions billed at it (not at a flat price of their
    # own); those keep the window's minimum commitment alone, when it changed.
    own_price_terms = ({"minimum_commitment": before[None]["minimum_commitment"]}
                       if None in changed and changed[None]["minimum_commitment"] != after[None]["minimum_commitment"]
                       else None)

    def plan_terms(flat_amount: Decimal) -> dict[str, Any] | None:
        return changed[None] if flat_amount == old_amount else own_price_terms

    def fee_start(window_start: Any, anchor: Any, started_at: Any, tz_name: str) -> Any:
        # The base fee's window of a plan billing charges monthly is the year holding the month.
        if not plan.bill_charges_monthly or anchor is None:
            return window_start
        return plan_fees.fee_period(interval=plan.interval, anchor=anchor, at=window_start,
                                    tz=windows.zone(tz_name), started_at=started_at)[0]

    rows = [WindowTerms(subscription_id=sub_id, charge_id=key,
                        window_start=window_start if key is not None else fee_start(window_start, anchor, started_at,
                                                                                     tz_name),
                        terms=terms)
            for sub_id, window_start, flat_amount, anchor, started_at, tz_name in open_windows.iterator(chunk_size=2000)
            if window_start is not None
            for key, terms in ((key, terms if key is not None else plan_terms(flat_amount))
                               for key, terms in changed.items())
            if terms is not None]
    WindowTerms.objects.bulk_create(rows, batch_size=1000, ignore_conflicts=True)


def _follow_plan_amount(plan: Plan, old_amount: Decimal) -> None:
    """The base fee of the open subscriptions of ``plan`` follows its new price from their
    next window (the open window's amount is kept in ``WindowTerms``). A subscription whose
    flat price was set apart from the plan's (an imported price) keeps it."""
    (Subscription.objects.filter(plan=plan, flat_amount=old_amount)
     .exclude(status__in=CLOSED_SUBSCRIPTION_STATUSES).update(flat_amount=plan.amount))


def plan_amount_for_window(*, subscription: Subscription, window_start: Any) -> Decimal:
    """The plan amount a window of ``subscription`` is billed at: the amount its plan had when
    the window opened (a price change applies from the next window), for PlanFee generation."""
    kept = (WindowTerms.objects.filter(subscription=subscription, charge__isnull=True, window_start=window_start)
            .values_list("terms", flat=True).first())
    return Decimal(kept["amount"]) if kept and "amount" in kept else subscription.plan.amount


# --------------------------------------------------------------------------- currencies


def check_currency_compatible(*, account: AccountLink, plan: Plan) -> bool:
    """Lago's rule when a customer subscribes (Subscriptions::CreateService through
    Customers::UpdateCurrencyService): the plan's currency must be the customer's.

    The customer is the service's own account. Returns False when the currencies match;
    True when the account has no currency yet and takes the plan's (the caller assigns it);
    raises 422 ``{"currency": ["currencies_does_not_match"]}`` when the account's currency
    differs and it already has a subscription (any status: its bills are in its currency).
    An account that set a currency but never subscribed takes the plan's, as Lago's
    editable customer does.
    """
    if account.currency is None:
        return True
    if account.currency.upper() == plan.amount_currency.upper():
        return False
    if Subscription.objects.filter(account_link=account).exists():
        raise ValidationFailed({"currency": [ErrorCode.CURRENCIES_DOES_NOT_MATCH]})
    return True


@transaction.atomic
def prepare_plan_deletion(*, plan: Plan) -> Plan:
    """Lago's ``Plans::PrepareDestroyService``: the plan becomes ``pending_deletion`` and
    ``plan.deleted`` is sent; ``metering.lifecycle.finish_plan_deletions`` then ends its
    subscriptions and discards it. Idempotent."""
    plan = Plan.objects.select_for_update().get(pk=plan.pk)
    if plan.pending_deletion or plan.deleted_at is not None:
        return plan
    plan.pending_deletion = True
    plan.save(update_fields=["pending_deletion", "updated_at"])
    record_event(service=plan.service, webhook_type=WebhookType.PLAN_DELETED, object_type="plan",
                 payload=render_plan(plan))
    return plan


@transaction.atomic
def discard_plan(*, plan_id: Any, now: datetime) -> bool:
    """The end of a deletion: once none of its subscriptions is active or pending, the plan is
    discarded (kept for the bills that reference it; its code is free again). A pending
    downgrade to it is dropped. False while subscriptions remain."""
    plan = Plan.objects.select_for_update().filter(pk=plan_id, pending_deletion=True).first()
    if plan is None:
        return False
    if Subscription.objects.filter(plan=plan).exclude(status__in=CLOSED_SUBSCRIPTION_STATUSES).exists():
        return False
    Subscription.objects.filter(next_plan=plan).update(next_plan=None)
    plan.pending_deletion = False
    plan.deleted_at = now
    plan.save(update_fields=["pending_deletion", "deleted_at", "updated_at"])
    return True


# --------------------------------------------------------------------------- plan metadata

METADATA_MAX_KEYS = 50
METADATA_KEY_MAX_LENGTH = 100
METADATA_VALUE_MAX_LENGTH = 255


def check_metadata(metadata: Any) -> dict[str, str | None]:
    """Lago's metadata: an object of string keys and string (or null) values."""
    if not isinstance(metadata, dict) or len(metadata) > METADATA_MAX_KEYS or not all(
            isinstance(key, str) and 0 < len(key) <= METADATA_KEY_MAX_LENGTH
            and (value is None or (isinstance(value, str) and len(value) <= METADATA_VALUE_MAX_LENGTH))
            for key, value in metadata.items()):
        raise ValidationFailed({"metadata": [ErrorCode.VALUE_IS_INVALID]})
    return dict(metadata)


@transaction.atomic
def replace_plan_metadata(*, plan: Plan, metadata: Any) -> dict[str, str | None] | None:
    """``POST /plans/{code}/metadata`` (replace); ``None`` removes it (``DELETE``)."""
    plan = Plan.objects.select_for_update().get(pk=plan.pk)
    plan.metadata = None if metadata is None else check_metadata(metadata)
    plan.save(update_fields=["metadata", "updated_at"])
    return plan.metadata


@transaction.atomic
def merge_plan_metadata(*, plan: Plan, metadata: Any) -> dict[str, str | None] | None:
    """``PATCH /plans/{code}/metadata``: the given keys are set, the others kept."""
    plan = Plan.objects.select_for_update().get(pk=plan.pk)
    merged = {**(plan.metadata or {}), **check_metadata(metadata)}
    plan.metadata = check_metadata(merged)
    plan.save(update_fields=["metadata", "updated_at"])
    return plan.metadata


@transaction.atomic
def delete_plan_metadata_key(*, plan: Plan, key: str) -> dict[str, str | None] | None:
    """``DELETE /plans/{code}/metadata/{key}``: Lago's 404 ``metadata_not_found`` without metadata."""
    plan = Plan.objects.select_for_update().get(pk=plan.pk)
    if plan.metadata is None:
        raise NotFound(ErrorCode.METADATA_NOT_FOUND)
    plan.metadata = {k: v for k, v in plan.metadata.items() if k != key}
    plan.save(update_fields=["metadata", "updated_at"])
    return plan.metadata
