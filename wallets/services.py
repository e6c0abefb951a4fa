"""Writes of wallets and their transactions (Lago's ``Wallets::*`` and ``WalletTransactions::*``).

Every change is written with its webhook events in one transaction (the outbox). The balance is
derived from the settled transactions (``selectors.credits_of``); a write that needs it locks the
wallet row first, so two writers never spend the same credits.

- granted credits settle at once; voided credits leave at once (never more than the balance);
- paid credits stay ``pending`` until Odoo says their one-off invoice is paid (the bridge makes the
  invoice from ``selectors.purchases_awaiting_invoice`` and calls ``settle_purchase`` from the pull);
- consumption (``consume``) is one outbound ``invoiced`` transaction per subscription window, written
  by the bridge in the same transaction as the sync state of its Odoo line;
- a terminated or expired wallet voids what is left;
- recurring top-ups (Lago's ``recurring_transaction_rules``, one per wallet): an interval rule tops up once
  per due date on beat (a ``RecurringTopUp`` row per due date, unique, written with the top-up); a threshold
  rule tops up in the transaction that brings the ongoing balance (plus pending purchases) to or below its
  threshold, under the wallet lock, once per crossing (``_check_threshold``). Their top-ups are ordinary
  transactions with ``source`` ``interval`` / ``threshold``.
"""
from __future__ import annotations

import datetime as dt
import uuid
from decimal import ROUND_DOWN, ROUND_UP, Decimal, InvalidOperation
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from billing_kit.errors import ErrorCode, NotAllowed, NotFound, ValidationFailed
from billing_kit.formatting import minor_unit_exponent
from identity.models import AccountLink, Service
from metering.models import AMOUNT, QUANTITY, Subscription
from metering.services.catalogue import check_metadata
from metering.windows import period_boundary
from webhooks.event_types import WebhookType
from webhooks.services import record_event

from .models import (
    RecurringTopUp,
    RecurringTransactionRule,
    RuleInterval,
    RuleMethod,
    RuleStatus,
    RuleTrigger,
    TransactionKind,
    TransactionStatus,
    TransactionType,
    Wallet,
    WalletStatus,
    WalletTransaction,
)
from .renderers import render_transaction, render_wallet
from .selectors import balances, credits_of

ZERO = Decimal(0)
AMOUNT_QUANTUM = Decimal(1).scaleb(-AMOUNT["decimal_places"])


# The input field each kind of transaction comes from (where an out-of-range amount is reported).
INPUT_FIELD: dict[str, str] = {TransactionKind.PURCHASED: "paid_credits", TransactionKind.GRANTED: "granted_credits",
               TransactionKind.VOIDED: "voided_credits"}
AMOUNT_LIMIT = Decimal(10) ** (AMOUNT["max_digits"] - AMOUNT["decimal_places"])


def _amount(wallet: Wallet, credits: Decimal, *, field: str = "credits") -> Decimal:
    amount = (credits * Decimal(wallet.rate_amount)).quantize(AMOUNT_QUANTUM)
    if amount >= AMOUNT_LIMIT:
        raise ValidationFailed({field: [ErrorCode.VALUE_IS_OUT_OF_RANGE]})
    return amount


def _wallet_event(wallet: Wallet, webhook_type: str) -> None:
    record_event(service=wallet.service, webhook_type=webhook_type, object_type="wallet",
                 payload=render_wallet(wallet, balances([wallet])[wallet.pk]))


def _transaction_event(tx: WalletTransaction, webhook_type: str) -> None:
    record_event(service=tx.wallet.service, webhook_type=webhook_type, object_type="wallet_transaction",
                 payload=render_transaction(tx))


def _locked(wallet: Wallet) -> Wallet:
    locked = Wallet.objects.select_for_update().select_related("service", "account_link").get(pk=wallet.pk)
    return locked


def _add(wallet: Wallet, *, kind: str, credits: Decimal, now: dt.datetime, name: str = "",
         metadata: list[dict[str, str]] | None = None, source: str = "manual",
         subscription: Subscription | None = None, window_end: dt.datetime | None = None,
         rule: RecurringTransactionRule | None = None) -> WalletTransaction:
    inbound = kind in (TransactionKind.PURCHASED, TransactionKind.GRANTED)
    settled = kind != TransactionKind.PURCHASED
    tx = WalletTransaction.objects.create(
        wallet=wallet, transaction_type=TransactionType.INBOUND if inbound else TransactionType.OUTBOUND,
        status=TransactionStatus.SETTLED if settled else TransactionStatus.PENDING, transaction_status=kind,
        source=source, credit_amount=credits, amount=_amount(wallet, credits, field=INPUT_FIELD.get(kind, "credits")),
        name=name, metadata=metadata or [],
        subscription=subscription, window_end=window_end, rule=rule, settled_at=now if settled else None)
    _transaction_event(tx, WebhookType.WALLET_TRANSACTION_CREATED)
    return tx


def _top_up(wallet: Wallet, data: dict[str, Any], now: dt.datetime, *, meta: list[dict[str, str]] | None,
            name: str) -> list[WalletTransaction]:
    """Lago's order: paid credits, then granted credits (a zero or missing amount makes no transaction)."""
    made = []
    for field, kind in (("paid_credits", TransactionKind.PURCHASED), ("granted_credits", TransactionKind.GRANTED)):
        credits = data.get(field)
        if credits:
            made.append(_add(wallet, kind=kind, credits=credits, now=now, name=name, metadata=meta))
    return made

# --------------------------------------------------------------------------- recurring transaction rules

RULES_FIELD = "recurring_transaction_rules"
CREDITS_QUANTUM = Decimal(1).scaleb(-QUANTITY["decimal_places"])
# as the credits of the API's inputs (28 digits, 10 decimals): within Decimal's default precision
CREDITS_LIMIT = Decimal(10) ** 18
RULE_FIELDS = frozenset({
    "lago_id", "trigger", "method", "interval", "threshold_credits", "paid_credits", "granted_credits",
    "target_ongoing_balance", "grants_target_top_up", "ignore_paid_top_up_limits", "started_at", "expiration_at",
    "transaction_metadata", "transaction_name"})
# What a client may send back from a rendered rule: read-only, ignored.
RULE_READ_ONLY = frozenset({"status", "created_at", "applied_invoice_custom_sections"})
# Lago fields of a rule that are not built: refused when set.
RULE_NOT_BUILT = frozenset({"invoice_requires_successful_payment", "payment_method", "invoice_custom_section",
                            "purchase_order_number"})
MONTHS_PER_INTERVAL = {RuleInterval.MONTHLY: 1, RuleInterval.QUARTERLY: 3, RuleInterval.SEMIANNUAL: 6,
                       RuleInterval.YEARLY: 12}


def _invalid_rule() -> ValidationFailed:
    return ValidationFailed({RULES_FIELD: [ErrorCode.INVALID_RECURRING_RULE]})


def _rule_decimal(value: Any) -> Decimal | None:
    """Lago's decimal amounts: a number or a numeric string, not negative (None when not given)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float, Decimal)):
        raise _invalid_rule()
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise _invalid_rule() from None
    if not number.is_finite() or number < 0:
        raise _invalid_rule()
    if number >= CREDITS_LIMIT:
        raise ValidationFailed({RULES_FIELD: [ErrorCode.VALUE_IS_OUT_OF_RANGE]})
    return number.quantize(CREDITS_QUANTUM, rounding=ROUND_DOWN)


def _rule_datetime(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        moment: dt.datetime | None = value
    elif isinstance(value, str):
        try:
            moment = parse_datetime(value)
        except ValueError:  # well formed but no such date (month 13)
            moment = None
    else:
        moment = None
    if moment is None:
        raise _invalid_rule()
    return moment if timezone.is_aware(moment) else moment.replace(tzinfo=dt.timezone.utc)


def _rule_metadata(value: Any) -> list[dict[str, str]]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(
            isinstance(item, dict) and set(item) == {"key", "value"} and isinstance(item["key"], str)
            and isinstance(item["value"], str) and 0 < len(item["key"]) <= 255 and len(item["value"]) <= 255
            for item in value):
        raise _invalid_rule()
    return [{"key": item["key"], "value": item["value"]} for item in value]


def _rule_flag(value: Any) -> bool:
    if value is None:
        return False
    if not isinstance(value, bool):
        raise _invalid_rule()
    return value


def _parse_rule(raw: dict[str, Any], *, now: dt.datetime, new_expiration: bool = True) -> dict[str, Any]:
    """One rule as Lago's ``RecurringTransactionRules::ValidateService`` accepts it: an interval trigger with
    a known interval or a threshold trigger with ``threshold_credits``; a target method with
    ``target_ongoing_balance``; credits and metadata well formed. Anything else: ``invalid_recurring_rule``."""
    trigger, method = raw.get("trigger"), raw.get("method") or RuleMethod.FIXED
    if trigger not in RuleTrigger.values or method not in RuleMethod.values:
        raise _invalid_rule()
    interval = raw.get("interval")
    if trigger == RuleTrigger.INTERVAL and interval not in RuleInterval.values:
        raise _invalid_rule()
    threshold = _rule_decimal(raw.get("threshold_credits"))
    if trigger == RuleTrigger.THRESHOLD and threshold is None:
        raise _invalid_rule()
    target = _rule_decimal(raw.get("target_ongoing_balance"))
    if method == RuleMethod.TARGET and target is None:
        raise _invalid_rule()
    expiration = _rule_datetime(raw.get("expiration_at"))
    if new_expiration and expiration is not None and expiration <= now:
        raise _invalid_rule()
    name = raw.get("transaction_name")
    if name is not None and (not isinstance(name, str) or len(name) > 255):
        raise _invalid_rule()
    return {
        "trigger": trigger, "method": method,
        "interval": interval if trigger == RuleTrigger.INTERVAL else "",
        "threshold_credits": threshold if trigger == RuleTrigger.THRESHOLD else ZERO,
        "paid_credits": _rule_decimal(raw.get("paid_credits")),
        "granted_credits": _rule_decimal(raw.get("granted_credits")),
        "target_ongoing_balance": target if method == RuleMethod.TARGET else None,
        "grants_target_top_up": _rule_flag(raw.get("grants_target_top_up")) and method == RuleMethod.TARGET,
        "ignore_paid_top_up_limits": _rule_flag(raw.get("ignore_paid_top_up_limits")),
        "started_at": _rule_datetime(raw.get("started_at")), "expiration_at": expiration,
        "transaction_metadata": _rule_metadata(raw.get("transaction_metadata")),
        "transaction_name": name or "",
    }


def _rule_payloads(raw: Any) -> list[dict[str, Any]]:
    """The shape of ``recurring_transaction_rules``: a list of at most one object (Lago allows one rule)."""
    if not isinstance(raw, list) or not all(isinstance(item, dict) for item in raw):
        raise _invalid_rule()
    if len(raw) > 1:
        raise ValidationFailed({RULES_FIELD: [ErrorCode.INVALID_NUMBER_OF_RECURRING_RULES]})
    for item in raw:
        given = {key for key, value in item.items() if value is not None}
        if given & RULE_NOT_BUILT and any(item[key] not in (False, "", [], {}) for key in given & RULE_NOT_BUILT):
            raise ValidationFailed({RULES_FIELD: [ErrorCode.NOT_SUPPORTED]})
        if set(item) - RULE_FIELDS - RULE_READ_ONLY - RULE_NOT_BUILT:
            raise _invalid_rule()
    return [{key: value for key, value in item.items() if key in RULE_FIELDS and value is not None} for item in raw]


def _rule_as_payload(rule: RecurringTransactionRule) -> dict[str, Any]:
    return {"trigger": rule.trigger, "method": rule.method, "interval": rule.interval or None,
            "threshold_credits": rule.threshold_credits, "paid_credits": rule.paid_credits,
            "granted_credits": rule.granted_credits, "target_ongoing_balance": rule.target_ongoing_balance,
            "grants_target_top_up": rule.grants_target_top_up,
            "ignore_paid_top_up_limits": rule.ignore_paid_top_up_limits, "started_at": rule.started_at,
            "expiration_at": rule.expiration_at, "transaction_metadata": rule.transaction_metadata,
            "transaction_name": rule.transaction_name}


def _check_rule_amounts(wallet: Wallet, fields: dict[str, Any]) -> None:
    """A rule's top-up must be writable later (beat or a consumption must never fail on it): its credits at
    the wallet's rate stay within the amount column."""
    for credits in (fields["paid_credits"], fields["granted_credits"], fields["target_ongoing_balance"]):
        if credits is not None and credits * Decimal(wallet.rate_amount) >= AMOUNT_LIMIT:
            raise ValidationFailed({RULES_FIELD: [ErrorCode.VALUE_IS_OUT_OF_RANGE]})


def _create_rule(wallet: Wallet, payload: dict[str, Any], *, now: dt.datetime,
                 wallet_data: dict[str, Any] | None = None) -> RecurringTransactionRule:
    """Lago's ``RecurringTransactionRules::CreateService``: a fixed rule without credits takes the wallet's
    first top-up (on creation), else none."""
    fields = _parse_rule(payload, now=now)
    if (fields["method"] == RuleMethod.FIXED and fields["paid_credits"] is None
            and fields["granted_credits"] is None and wallet_data is not None):
        fields["paid_credits"] = wallet_data.get("paid_credits")
        fields["granted_credits"] = wallet_data.get("granted_credits")
    fields["paid_credits"] = fields["paid_credits"] or ZERO
    fields["granted_credits"] = fields["granted_credits"] or ZERO
    _check_rule_amounts(wallet, fields)
    return RecurringTransactionRule.objects.create(wallet=wallet, **fields)


def _terminate_rule(rule: RecurringTransactionRule, now: dt.datetime) -> None:
    rule.status, rule.terminated_at = RuleStatus.TERMINATED, now
    rule.save(update_fields=["status", "terminated_at", "updated_at"])


def _replace_rules(wallet: Wallet, payloads: list[dict[str, Any]], *, now: dt.datetime) -> None:
    """Lago's ``RecurringTransactionRules::UpdateService``: a rule whose ``lago_id`` is an active rule of the
    wallet is updated (the fields given), any other is created; active rules not named are terminated."""
    active = {str(rule.pk): rule for rule in wallet.rules.filter(status=RuleStatus.ACTIVE)}
    kept = {str(p["lago_id"]) for p in payloads if str(p.get("lago_id")) in active}
    for lago_id, dropped in active.items():
        if lago_id not in kept:
            _terminate_rule(dropped, now)
    for payload in payloads:
        rule = active.get(str(payload.get("lago_id")))
        if rule is None:
            _create_rule(wallet, payload, now=now)
            continue
        fields = _parse_rule({**_rule_as_payload(rule), **payload}, now=now,
                             new_expiration="expiration_at" in payload)
        fields["paid_credits"] = fields["paid_credits"] or ZERO
        fields["granted_credits"] = fields["granted_credits"] or ZERO
        _check_rule_amounts(wallet, fields)
        for field, value in fields.items():
            setattr(rule, field, value)
        rule.threshold_spent_at = None  # a changed rule starts a new crossing
        rule.save()


def _ongoing_credits(wallet: Wallet) -> Decimal:
    """Lago's ``credits_ongoing_balance``: the balance minus the usage not invoiced yet, in credits."""
    figures = balances([wallet])[wallet.pk]
    return figures.credits - figures.usage_amount / Decimal(wallet.rate_amount)


def _pending_credits(wallet: Wallet) -> Decimal:
    pending = WalletTransaction.objects.filter(wallet=wallet, status=TransactionStatus.PENDING,
                                               transaction_type=TransactionType.INBOUND)
    return pending.aggregate(total=Sum("credit_amount"))["total"] or ZERO


def _rule_credits(rule: RecurringTransactionRule, ongoing: Decimal) -> tuple[Decimal, Decimal]:
    """(paid, granted) of one top-up: the fixed credits, or the gap to the target ongoing balance."""
    if rule.method == RuleMethod.FIXED:
        return Decimal(rule.paid_credits), Decimal(rule.granted_credits)
    gap = max(Decimal(rule.target_ongoing_balance or 0) - ongoing, ZERO).quantize(CREDITS_QUANTUM, rounding=ROUND_UP)
    return (ZERO, gap) if rule.grants_target_top_up else (gap, ZERO)


def _rule_top_up(wallet: Wallet, rule: RecurringTransactionRule, *, source: str, paid: Decimal, granted: Decimal,
                 now: dt.datetime) -> list[WalletTransaction]:
    made = []
    # a target's gap also grows with usage: never more than one transaction's amount can hold
    most = ((AMOUNT_LIMIT - AMOUNT_QUANTUM) / Decimal(wallet.rate_amount)).quantize(
        CREDITS_QUANTUM, rounding=ROUND_DOWN)
    for credits, kind in ((min(paid, most), TransactionKind.PURCHASED),
                          (min(granted, most), TransactionKind.GRANTED)):
        if credits > 0:
            made.append(_add(wallet, kind=kind, credits=credits, now=now, name=rule.transaction_name,
                             metadata=rule.transaction_metadata, source=source, rule=rule))
    if made:
        _wallet_event(wallet, WebhookType.WALLET_UPDATED)
    return made


def _live(rule: RecurringTransactionRule, now: dt.datetime) -> bool:
    return rule.status == RuleStatus.ACTIVE and (rule.expiration_at is None or rule.expiration_at > now)


def _check_threshold(wallet: Wallet, now: dt.datetime) -> list[WalletTransaction]:
    """Lago's ``Wallets::ThresholdTopUpService``, on the locked wallet: when the ongoing balance plus the
    credits already bought and not yet paid is at or below the threshold, top up. Once per crossing: a
    top-up that leaves it still at or below marks the rule spent until the balance is above it again."""
    rule = wallet.rules.filter(status=RuleStatus.ACTIVE, trigger=RuleTrigger.THRESHOLD).first()
    if rule is None or wallet.status != WalletStatus.ACTIVE or not _live(rule, now):
        return []
    ongoing = _ongoing_credits(wallet)
    level = ongoing + _pending_credits(wallet)
    if level > rule.threshold_credits:
        if rule.threshold_spent_at is not None:
            rule.threshold_spent_at = None
            rule.save(update_fields=["threshold_spent_at", "updated_at"])
        return []
    if rule.threshold_spent_at is not None:
        return []
    paid, granted = _rule_credits(rule, ongoing)
    made = _rule_top_up(wallet, rule, source="threshold", paid=paid, granted=granted, now=now)
    if level + paid + granted <= rule.threshold_credits:
        rule.threshold_spent_at = now
        rule.save(update_fields=["threshold_spent_at", "updated_at"])
    return made


def _due_at(rule: RecurringTransactionRule, wallet: Wallet, now: dt.datetime) -> dt.datetime | None:
    """The latest due date of an interval rule at ``now``: ``started_at`` (else the wallet's creation) plus
    whole intervals (month ends clamped, as Lago's anniversaries). Never the wallet's creation itself (its
    first top-up was made then), nor a date before the rule existed."""
    anchor = rule.started_at or wallet.created_at
    if now < anchor:
        return None
    if rule.interval == RuleInterval.WEEKLY:
        due = anchor + dt.timedelta(weeks=(now - anchor) // dt.timedelta(weeks=1))
    else:
        months = MONTHS_PER_INTERVAL[RuleInterval(rule.interval)]
        index = ((now.year - anchor.year) * 12 + now.month - anchor.month) // months
        while index > 0 and period_boundary(interval="monthly", anchor=anchor, index=index * months) > now:
            index -= 1
        due = period_boundary(interval="monthly", anchor=anchor, index=index * months)
    if due <= wallet.created_at or due < rule.created_at:
        return None
    return due


def _run_interval_rule(rule_id: uuid.UUID, due: dt.datetime, now: dt.datetime) -> bool:
    with transaction.atomic():
        rule = RecurringTransactionRule.objects.select_related("wallet").get(pk=rule_id)
        wallet = _locked(rule.wallet)
        rule.refresh_from_db()
        # read again under the lock: the rule may have been changed or ended since it was found due
        if wallet.status != WalletStatus.ACTIVE or not _live(rule, now) or _due_at(rule, wallet, now) != due:
            return False
        try:
            with transaction.atomic():
                RecurringTopUp.objects.create(rule=rule, due_at=due)
        except IntegrityError:
            return False  # this due date was run already (a retried or concurrent task)
        paid, granted = _rule_credits(rule, _ongoing_credits(wallet))
        _rule_top_up(wallet, rule, source="interval", paid=paid, granted=granted, now=now)
    return True


def run_interval_rules(*, now: dt.datetime | None = None) -> int:
    """Beat (Lago's ``CreateIntervalWalletTransactionsService``): each active interval rule due since its last
    run tops up once for its latest due date (missed dates are not caught up)."""
    now = now or timezone.now()
    done = 0
    rules = RecurringTransactionRule.objects.filter(
        status=RuleStatus.ACTIVE, trigger=RuleTrigger.INTERVAL, wallet__status=WalletStatus.ACTIVE,
    ).select_related("wallet").order_by("created_at", "id")
    for rule in rules:
        if not _live(rule, now):
            continue
        due = _due_at(rule, rule.wallet, now)
        if due is None or RecurringTopUp.objects.filter(rule=rule, due_at=due).exists():
            continue
        done += _run_interval_rule(rule.pk, due, now)
    return done


def run_threshold_rules(*, now: dt.datetime | None = None) -> int:
    """Beat: the ongoing balance also falls when usage is rated (below this app), so threshold rules are
    checked here too; a top-up made in between by a write leaves nothing to do."""
    now = now or timezone.now()
    rules = list(RecurringTransactionRule.objects.filter(
        status=RuleStatus.ACTIVE, trigger=RuleTrigger.THRESHOLD, wallet__status=WalletStatus.ACTIVE,
    ).select_related("wallet__account_link"))
    # One pass over every wallet's figures; only the wallets near or past their threshold (or whose rule is
    # spent and may re-arm) are locked and checked exactly.
    figures = balances([rule.wallet for rule in rules])
    pending = dict(WalletTransaction.objects.filter(
        wallet__in=[rule.wallet_id for rule in rules], status=TransactionStatus.PENDING,
        transaction_type=TransactionType.INBOUND).values("wallet_id").annotate(
        total=Sum("credit_amount")).values_list("wallet_id", "total"))
    made = 0
    for rule in rules:
        figure = figures[rule.wallet_id]
        level = (figure.credits - figure.usage_amount / Decimal(rule.wallet.rate_amount)
                 + (pending.get(rule.wallet_id) or ZERO))
        if level > rule.threshold_credits and rule.threshold_spent_at is None:
            continue
        with transaction.atomic():
            made += bool(_check_threshold(_locked(rule.wallet), now))
    return made


def terminate_expired_rules(*, now: dt.datetime | None = None) -> int:
    """Beat: rules whose ``expiration_at`` has come end (``status: terminated``)."""
    now = now or timezone.now()
    return RecurringTransactionRule.objects.filter(status=RuleStatus.ACTIVE, expiration_at__lte=now).update(
        status=RuleStatus.TERMINATED, terminated_at=now, updated_at=now)


# --------------------------------------------------------------------------- wallets


def create_wallet(*, service: Service, link: AccountLink, data: dict[str, Any],
                  now: dt.datetime | None = None) -> Wallet:
    """Lago's ``Wallets::CreateService``: the wallet, then its first top-up; currency = the account's."""
    now = now or timezone.now()
    currency = (data.get("currency") or link.currency or service.default_currency).upper()
    if link.currency and link.currency.upper() != currency:
        raise ValidationFailed({"currency": [ErrorCode.CURRENCIES_DOES_NOT_MATCH]})
    expiration = data.get("expiration_at")
    if expiration is not None and expiration <= now:
        raise ValidationFailed({"expiration_at": [ErrorCode.INVALID_EXPIRATION_AT]})
    rules = _rule_payloads(data[RULES_FIELD]) if data.get(RULES_FIELD) is not None else []
    for payload in rules:
        _parse_rule(payload, now=now)  # refused before anything is written
    metadata = None if data.get("metadata") is None else check_metadata(data["metadata"])
    try:
        with transaction.atomic():
            if not link.currency:
                AccountLink.objects.filter(pk=link.pk).update(currency=currency)
                link.currency = currency
            wallet = Wallet.objects.create(
                service=service, account_link=link, name=data.get("name") or "", code=data.get("code") or "",
                priority=data.get("priority") or 50, currency=currency, rate_amount=data["rate_amount"],
                expiration_at=expiration, metadata=metadata)
            for payload in rules:
                _create_rule(wallet, payload, now=now, wallet_data=data)
            _wallet_event(wallet, WebhookType.WALLET_CREATED)
            _top_up(wallet, data, now, meta=data.get("transaction_metadata"),
                    name=data.get("transaction_name") or "")
            _check_threshold(wallet, now)
    except IntegrityError:
        raise ValidationFailed({"customer": [ErrorCode.WALLET_ALREADY_EXISTS]}) from None
    return wallet


def update_wallet(*, wallet: Wallet, data: dict[str, Any], now: dt.datetime | None = None) -> Wallet:
    now = now or timezone.now()
    if wallet.status != WalletStatus.ACTIVE:
        raise NotAllowed(ErrorCode.WALLET_IS_TERMINATED)
    with transaction.atomic():
        wallet = _locked(wallet)
        if "expiration_at" in data:
            expiration = data["expiration_at"]
            if expiration is not None and expiration <= now:
                raise ValidationFailed({"expiration_at": [ErrorCode.INVALID_EXPIRATION_AT]})
            wallet.expiration_at = expiration
        for field in ("name", "code"):
            if field in data:
                setattr(wallet, field, data[field] or "")
        if data.get("priority") is not None:
            wallet.priority = data["priority"]
        if "metadata" in data:  # replaced, as Lago's wallet update does
            wallet.metadata = None if data["metadata"] is None else check_metadata(data["metadata"])
        wallet.save()
        if data.get(RULES_FIELD) is not None:
            _replace_rules(wallet, _rule_payloads(data[RULES_FIELD]), now=now)
        _wallet_event(wallet, WebhookType.WALLET_UPDATED)
        _check_threshold(wallet, now)
    return wallet


def _void_rest(wallet: Wallet, now: dt.datetime, *, source: str) -> WalletTransaction | None:
    left = credits_of(wallet)
    if left <= 0:
        return None
    return _add(wallet, kind=TransactionKind.VOIDED, credits=left, now=now, source=source)


def terminate_wallet(*, wallet: Wallet, now: dt.datetime | None = None, source: str = "manual") -> Wallet:
    """Lago's ``Wallets::TerminateService``: the wallet ends; the credits left are voided (a terminated
    wallet holds none). Idempotent."""
    now = now or timezone.now()
    with transaction.atomic():
        wallet = _locked(wallet)
        if wallet.status == WalletStatus.TERMINATED:
            return wallet
        _void_rest(wallet, now, source=source)
        for rule in wallet.rules.filter(status=RuleStatus.ACTIVE):
            _terminate_rule(rule, now)
        wallet.status = WalletStatus.TERMINATED
        wallet.terminated_at = now
        wallet.save(update_fields=["status", "terminated_at", "updated_at"])
        _wallet_event(wallet, WebhookType.WALLET_TERMINATED)
    return wallet


def create_transactions(*, wallet: Wallet, data: dict[str, Any], now: dt.datetime | None = None
                        ) -> list[WalletTransaction]:
    """Lago's ``WalletTransactions::CreateService``: paid, granted, then voided credits."""
    now = now or timezone.now()
    with transaction.atomic():
        wallet = _locked(wallet)
        if wallet.status != WalletStatus.ACTIVE:
            raise NotAllowed(ErrorCode.WALLET_IS_TERMINATED)
        voided = data.get("voided_credits") or ZERO
        if voided and voided > credits_of(wallet):
            raise ValidationFailed({"voided_credits": [ErrorCode.INSUFFICIENT_CREDITS]})
        made = _top_up(wallet, data, now, meta=data.get("metadata"), name=data.get("name") or "")
        if voided:
            made.append(_add(wallet, kind=TransactionKind.VOIDED, credits=voided, now=now,
                             name=data.get("name") or "", metadata=data.get("metadata")))
        if made:
            _wallet_event(wallet, WebhookType.WALLET_UPDATED)
        _check_threshold(wallet, now)  # its top-up is not part of this answer (Lago's is a job of its own)
    return made


def attach_invoice(*, transaction_id: uuid.UUID, invoice_id: uuid.UUID) -> None:
    """The one-off invoice made for a paid top-up (its lago_id), recorded by the bridge."""
    WalletTransaction.objects.filter(pk=transaction_id, invoice_id__isnull=True).update(invoice_id=invoice_id)


def settle_purchase(*, transaction_id: uuid.UUID, now: dt.datetime | None = None) -> bool:
    """Odoo says the top-up's invoice is paid: its credits join the balance (once). Call inside the
    caller's transaction (the pull's mirror of that invoice)."""
    now = now or timezone.now()
    tx = (WalletTransaction.objects.select_for_update().select_related("wallet__service", "wallet__account_link")
          .filter(pk=transaction_id, status=TransactionStatus.PENDING).first())
    if tx is None:
        return False
    tx.status, tx.settled_at = TransactionStatus.SETTLED, now
    tx.save(update_fields=["status", "settled_at", "updated_at"])
    _transaction_event(tx, WebhookType.WALLET_TRANSACTION_UPDATED)
    if tx.wallet.status == WalletStatus.TERMINATED:
        _void_rest(tx.wallet, now, source=tx.source)  # paid after the end: given back by Odoo, not kept here
    _wallet_event(tx.wallet, WebhookType.WALLET_UPDATED)
    return True


def fail_purchase(*, transaction_id: uuid.UUID, now: dt.datetime | None = None) -> bool:
    """The top-up's invoice was cancelled or reversed in Odoo before it was paid: the purchase fails."""
    now = now or timezone.now()
    tx = (WalletTransaction.objects.select_for_update().select_related("wallet__service")
          .filter(pk=transaction_id, status=TransactionStatus.PENDING).first())
    if tx is None:
        return False
    tx.status, tx.failed_at = TransactionStatus.FAILED, now
    tx.save(update_fields=["status", "failed_at", "updated_at"])
    _transaction_event(tx, WebhookType.WALLET_TRANSACTION_UPDATED)
    _check_threshold(_locked(tx.wallet), now)  # the credits it promised are gone
    return True


def consume(*, wallet: Wallet, subscription: Subscription, window_end: dt.datetime, invoice_amount: Decimal,
            now: dt.datetime | None = None) -> WalletTransaction | None:
    """Prepaid credits reduce the invoice of one closed window: min(balance, invoice amount), once per
    window (a second call for the same window returns the first transaction). Call inside the caller's
    transaction, which also writes the Odoo sync state of the credit line."""
    now = now or timezone.now()
    wallet = _locked(wallet)
    existing = WalletTransaction.objects.filter(wallet=wallet, subscription=subscription, window_end=window_end,
                                                transaction_status=TransactionKind.INVOICED).first()
    if existing is not None:
        return existing
    if wallet.status != WalletStatus.ACTIVE or invoice_amount <= 0:
        return None
    rate = Decimal(wallet.rate_amount)
    balance_amount = credits_of(wallet) * rate
    amount = min(balance_amount, invoice_amount)
    # at the currency's minor unit (what the Odoo line carries), never more than the balance
    amount = amount.quantize(Decimal(1).scaleb(-minor_unit_exponent(wallet.currency)), rounding=ROUND_DOWN)
    if amount <= 0:
        return None
    credits = min(credits_of(wallet), (amount / rate).quantize(Decimal("1e-10")))
    tx = WalletTransaction.objects.create(
        wallet=wallet, transaction_type=TransactionType.OUTBOUND, status=TransactionStatus.SETTLED,
        transaction_status=TransactionKind.INVOICED, source="manual", credit_amount=credits, amount=amount,
        subscription=subscription, window_end=window_end, settled_at=now)
    _transaction_event(tx, WebhookType.WALLET_TRANSACTION_CREATED)
    _wallet_event(wallet, WebhookType.WALLET_UPDATED)
    _check_threshold(wallet, now)
    return tx


def terminate_expired_wallets(*, now: dt.datetime | None = None) -> int:
    """Beat: active wallets whose ``expiration_at`` has come end there, their credits voided."""
    now = now or timezone.now()
    done = 0
    for wallet in Wallet.objects.filter(status=WalletStatus.ACTIVE, expiration_at__lte=now).select_related(
            "service", "account_link"):
        terminate_wallet(wallet=wallet, now=now, source="interval")
        done += 1
    return done


def announce_depleted_ongoing_balances(*, now: dt.datetime | None = None) -> int:
    """Lago's ``wallet.depleted_ongoing_balance``: once when an active wallet's ongoing balance (balance minus
    the usage not invoiced yet) reaches 0 or below; again only after it was positive in between."""
    now = now or timezone.now()
    wallets = list(Wallet.objects.filter(status=WalletStatus.ACTIVE).select_related("service", "account_link"))
    figures = balances(wallets)
    sent = 0
    for wallet in wallets:
        balance = figures[wallet.pk]
        ongoing = balance.credits * Decimal(wallet.rate_amount) - balance.usage_amount
        if ongoing > 0 and wallet.depleted_announced_at is not None:
            Wallet.objects.filter(pk=wallet.pk).update(depleted_announced_at=None)
        elif ongoing <= 0 and wallet.depleted_announced_at is None and (balance.credits or balance.usage_amount
                                                                      or balance.consumed_credits):
            with transaction.atomic():
                updated = Wallet.objects.filter(pk=wallet.pk, depleted_announced_at__isnull=True).update(
                    depleted_announced_at=now)
                if updated:
                    _wallet_event(wallet, WebhookType.WALLET_DEPLETED_ONGOING_BALANCE)
                    sent += 1
    return sent


# --------------------------------------------------------------------------- wallet metadata


def replace_wallet_metadata(*, wallet: Wallet, metadata: Any) -> dict[str, str | None] | None:
    """``POST /wallets/{id}/metadata`` (replace); ``None`` removes it all (``DELETE``)."""
    with transaction.atomic():
        wallet = _locked(wallet)
        wallet.metadata = None if metadata is None else check_metadata(metadata)
        wallet.save(update_fields=["metadata", "updated_at"])
    return wallet.metadata


def merge_wallet_metadata(*, wallet: Wallet, metadata: Any) -> dict[str, str | None] | None:
    """``PATCH /wallets/{id}/metadata``: the given keys set, the others kept."""
    with transaction.atomic():
        wallet = _locked(wallet)
        wallet.metadata = check_metadata({**(wallet.metadata or {}), **check_metadata(metadata)})
        wallet.save(update_fields=["metadata", "updated_at"])
    return wallet.metadata


def delete_wallet_metadata_key(*, wallet: Wallet, key: str) -> dict[str, str | None] | None:
    """``DELETE /wallets/{id}/metadata/{key}``: Lago's 404 ``metadata_not_found`` without metadata."""
    with transaction.atomic():
        wallet = _locked(wallet)
        if wallet.metadata is None:
            raise NotFound(ErrorCode.METADATA_NOT_FOUND)
        wallet.metadata = {k: v for k, v in wallet.metadata.items() if k != key}
        wallet.save(update_fields=["metadata", "updated_at"])
    return wallet.metadata
