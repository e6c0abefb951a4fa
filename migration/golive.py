"""Go-live: preflight, flip shadow subscriptions to live, and go back to shadow.

Preflight per subscription (every check is recorded, pass or fail):

- ``shadow``          the subscription is an open shadow subscription;
- ``reconciliation``  its last N closed periods (``MIGRATION_GO_LIVE_MATCHED_PERIODS``)
                      reconciled as ``match``;
- ``odoo_partner``    its customer has an Odoo partner id;
- ``stripe``          its customer's Stripe customer exists and has a usable default
                      payment method (exists, attached to that customer, card not
                      expired), read with the ``stripe`` library from ``STRIPE_API_KEY``
                      (``STRIPE_API_BASE`` points it elsewhere in tests).

Preflight per service adds service-wide checks (Stripe key and live-order gateway
configured, reconciliation has run) and the per-subscription results.

The flip pushes the subscription to Odoo as a live order with a ``payment.token``
for the existing Stripe customer and payment method (one Stripe account, so no
card migration), through a ``LiveOrderGateway`` (see below), then sets the
subscription's mode to ``live``. A live subscription can go back to shadow until
its first live invoice exists.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import date
from typing import Any, Protocol

import stripe
from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from identity.models import AccountLink, Customer, Service
from metering.models import CLOSED_SUBSCRIPTION_STATUSES, Subscription, SubscriptionMode
from migration.models import GoLiveAction, GoLiveAttempt, Reconciliation, ReconciliationStatus
from odoo_bridge.models import Invoice

logger = logging.getLogger("migration.golive")


# ----------------------------------------------------------------------------- gateway
@dataclass(frozen=True)
class LiveOrder:
    sale_order_id: int
    payment_token_id: int


class LiveOrderGateway(Protocol):
    """What go-live needs from the Odoo bridge (narrow on purpose).

    ``push_live_order`` must be idempotent (search by our reference before creating:
    a retried flip after a lost response must not duplicate the order or the token):
    it creates or finds the customer's ``payment.token`` for the Stripe customer
    (``provider_ref``) and payment method (``stripe_payment_method``), and the live,
    confirmed ``sale.order`` of the subscription with that ``payment_token_id``.
    ``return_to_shadow`` makes Odoo stop billing it (close the order, drop the token
    from it) before any live invoice exists.
    """

    def push_live_order(self, *, subscription: Subscription, stripe_customer_id: str,
                        stripe_payment_method_id: str) -> LiveOrder: ...

    def return_to_shadow(self, *, subscription: Subscription) -> None: ...


class GatewayNotConfigured(Exception):
    pass


def live_order_gateway() -> LiveOrderGateway:
    path = settings.MIGRATION_LIVE_ORDER_GATEWAY
    if not path:
        raise GatewayNotConfigured("MIGRATION_LIVE_ORDER_GATEWAY is not set: no way to push live orders to Odoo")
    try:
        factory = import_string(path)
    except ImportError as exc:
        raise GatewayNotConfigured(f"MIGRATION_LIVE_ORDER_GATEWAY {path!r} cannot be imported: {exc}") from None
    return factory()


# ----------------------------------------------------------------------------- checks
@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class SubscriptionPreflight:
    subscription: Subscription
    checks: list[Check] = field(default_factory=list)
    stripe_payment_method_id: str = ""

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def summary(self) -> str:
        failed = self.failures()
        if not failed:
            return "ready to go live"
        return "; ".join(f"{c.name}: {c.detail}" for c in failed)


@dataclass
class ServicePreflight:
    service: Service
    checks: list[Check]
    subscriptions: list[SubscriptionPreflight]

    @property
    def ready(self) -> list[SubscriptionPreflight]:
        return [p for p in self.subscriptions if p.ok]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)


def stripe_client() -> stripe.StripeClient:
    return stripe.StripeClient(
        settings.STRIPE_API_KEY,
        base_addresses={"api": settings.STRIPE_API_BASE},
        max_network_retries=1,
    )


def _stripe_problem(exc: stripe.StripeError, what: str) -> str:
    if isinstance(exc, stripe.InvalidRequestError) and exc.http_status == 404:
        return f"{what} does not exist in Stripe"
    if isinstance(exc, stripe.AuthenticationError):
        return "Stripe rejected STRIPE_API_KEY"
    if isinstance(exc, stripe.APIConnectionError):
        return "Stripe is unreachable"
    return f"Stripe error reading {what}: {exc.user_message or type(exc).__name__}"


def check_stripe(account: AccountLink, *, client: stripe.StripeClient | None = None,
                 today: date | None = None) -> tuple[Check, str]:
    """(check, default payment method id). Reads only; never writes to Stripe."""
    name = "stripe"
    cus_id = account.stripe_customer_id  # the account's own: never another service's card
    if not cus_id:
        return Check(name, False, "customer has no Stripe customer id"), ""
    if not settings.STRIPE_API_KEY:
        return Check(name, False, "STRIPE_API_KEY is not configured"), ""
    client = client or stripe_client()
    try:
        stripe_customer = client.v1.customers.retrieve(cus_id).to_dict()
    except stripe.StripeError as exc:
        return Check(name, False, _stripe_problem(exc, f"customer {cus_id}")), ""
    if stripe_customer.get("deleted"):
        return Check(name, False, f"Stripe customer {cus_id} is deleted"), ""
    default = (stripe_customer.get("invoice_settings") or {}).get("default_payment_method")
    if isinstance(default, dict):  # expanded
        default = default.get("id")
    if not default:
        return Check(name, False, f"Stripe customer {cus_id} has no default payment method"), ""
    try:
        method = client.v1.payment_methods.retrieve(default).to_dict()
    except stripe.StripeError as exc:
        return Check(name, False, _stripe_problem(exc, f"payment method {default}")), ""
    owner = method.get("customer")
    if isinstance(owner, dict):
        owner = owner.get("id")
    if owner != cus_id:
        return Check(name, False, f"payment method {default} is not attached to {cus_id}"), ""
    card = method.get("card") or {}
    if method.get("type") == "card":
        today = today or timezone.now().date()
        exp = (int(card.get("exp_year") or 0), int(card.get("exp_month") or 0))
        if exp < (today.year, today.month):
            return Check(name, False, f"card {default} expired {exp[1]:02d}/{exp[0]}"), ""
        detail = f"{default} ({card.get('brand', 'card')} ending {card.get('last4', '????')}, " \
                 f"exp {exp[1]:02d}/{exp[0]})"
    else:
        detail = f"{default} ({method.get('type')})"
    return Check(name, True, detail), default


def check_reconciliation(subscription: Subscription, *, periods: int | None = None,
                         today: date | None = None) -> Check:
    periods = periods or settings.MIGRATION_GO_LIVE_MATCHED_PERIODS
    today = today or timezone.now().date()
    latest = list(
        Reconciliation.objects.filter(service_id=subscription.service_id,
                                      external_subscription_id=subscription.external_id,
                                      period_end__lte=today)
        .order_by("-period_start")[:periods]
    )
    if len(latest) < periods:
        return Check("reconciliation", False,
                     f"only {len(latest)} of the last {periods} closed period(s) reconciled")
    bad = [r for r in latest if r.status != ReconciliationStatus.MATCH]
    if bad:
        return Check("reconciliation", False, "; ".join(
            f"period {r.period_start} is {r.status}" + (f" (delta {r.delta})" if r.delta is not None else "")
            for r in bad))
    return Check("reconciliation", True,
                 f"last {periods} closed period(s) matched (latest {latest[0].period_start})")


def check_shadow(subscription: Subscription) -> Check:
    if subscription.status in CLOSED_SUBSCRIPTION_STATUSES:
        return Check("shadow", False, f"subscription is {subscription.status}")
    if subscription.mode != SubscriptionMode.SHADOW:
        return Check("shadow", False, "subscription is already live")
    return Check("shadow", True, "open shadow subscription")


def check_odoo_partner(customer: Customer) -> Check:
    if not customer.odoo_partner_id:
        return Check("odoo_partner", False, "customer has no Odoo partner yet (sync the customer first)")
    return Check("odoo_partner", True, f"res.partner {customer.odoo_partner_id}")


def preflight_subscription(*, subscription: Subscription, client: stripe.StripeClient | None = None,
                           today: date | None = None, record: bool = True, started_by: str = "") -> SubscriptionPreflight:
    customer = subscription.account_link.customer
    result = SubscriptionPreflight(subscription=subscription)
    result.checks.append(check_shadow(subscription))
    result.checks.append(check_reconciliation(subscription, today=today))
    result.checks.append(check_odoo_partner(customer))
    stripe_check, payment_method = check_stripe(subscription.account_link, client=client, today=today)
    result.checks.append(stripe_check)
    result.stripe_payment_method_id = payment_method
    if record:
        _record(subscription, GoLiveAction.PREFLIGHT, ok=result.ok, checks=result.checks,
                message=result.summary(), started_by=started_by, stripe_payment_method_id=payment_method)
    return result


def preflight_service(*, service: Service, client: stripe.StripeClient | None = None,
                      today: date | None = None, started_by: str = "") -> ServicePreflight:
    checks = [
        Check("stripe_key", bool(settings.STRIPE_API_KEY),
              "STRIPE_API_KEY configured" if settings.STRIPE_API_KEY else "STRIPE_API_KEY is not set"),
    ]
    try:
        live_order_gateway()
        checks.append(Check("odoo_gateway", True, settings.MIGRATION_LIVE_ORDER_GATEWAY))
    except GatewayNotConfigured as exc:
        checks.append(Check("odoo_gateway", False, str(exc)))
    reconciled = Reconciliation.objects.filter(service=service).exists()
    checks.append(Check("reconciliation_run", reconciled,
                        "reconciliation rows exist" if reconciled else "reconciliation has never run"))
    subs = (Subscription.objects.filter(service=service, mode=SubscriptionMode.SHADOW)
            .exclude(status__in=CLOSED_SUBSCRIPTION_STATUSES)
            .select_related("account_link__customer", "plan").order_by("external_id"))
    client = client or (stripe_client() if settings.STRIPE_API_KEY else None)
    results = [preflight_subscription(subscription=s, client=client, today=today, started_by=started_by)
               for s in subs]
    return ServicePreflight(service=service, checks=checks, subscriptions=results)


# ----------------------------------------------------------------------------- actions
def _record(subscription: Subscription, action: str, *, ok: bool, checks: list[Check] | None = None,
            message: str = "", started_by: str = "", **extra: Any) -> GoLiveAttempt:
    return GoLiveAttempt.objects.create(
        subscription=subscription, action=action, ok=ok, checks=[asdict(c) for c in checks or []],
        message=message, started_by=started_by, **extra,
    )


def go_live(*, subscriptions: list[Subscription], gateway: LiveOrderGateway | None = None,
            client: stripe.StripeClient | None = None, today: date | None = None,
            started_by: str = "") -> list[GoLiveAttempt]:
    """Flip each subscription that passes its preflight; one GoLiveAttempt per subscription.

    The mode is set to live and the gateway called in one transaction: a refusal
    rolls the flip back. The gateway is idempotent, so a crash after Odoo answered
    is repaired by flipping again (the order and token are found, not duplicated).
    """
    attempts: list[GoLiveAttempt] = []
    try:
        gateway = gateway or live_order_gateway()
    except GatewayNotConfigured as exc:
        return [_record(s, GoLiveAction.GO_LIVE, ok=False, message=str(exc), started_by=started_by)
                for s in subscriptions]
    for sub in subscriptions:
        pre = preflight_subscription(subscription=sub, client=client, today=today, record=False)
        if not pre.ok:
            attempts.append(_record(sub, GoLiveAction.GO_LIVE, ok=False, checks=pre.checks,
                                    message="preflight failed: " + pre.summary(), started_by=started_by))
            continue
        account = sub.account_link
        try:
            # The flip and the push are one transaction: the bridge pushes only live
            # subscriptions, and if Odoo refuses, the mode rolls back to shadow.
            with transaction.atomic():
                locked = Subscription.objects.select_for_update().get(pk=sub.pk)
                locked.mode = SubscriptionMode.LIVE
                locked.save(update_fields=["mode", "updated_at"])
                order = gateway.push_live_order(subscription=locked, stripe_customer_id=account.stripe_customer_id,
                                                stripe_payment_method_id=pre.stripe_payment_method_id)
                locked.odoo_sale_order_id = order.sale_order_id
                locked.save(update_fields=["odoo_sale_order_id", "updated_at"])
        except Exception as exc:  # Odoo down, access denied, ...: stays shadow, reported
            logger.exception("go-live of %s failed in Odoo", sub)
            attempts.append(_record(sub, GoLiveAction.GO_LIVE, ok=False, checks=pre.checks,
                                    message=f"Odoo refused the live order: {type(exc).__name__}: {exc}",
                                    started_by=started_by,
                                    stripe_payment_method_id=pre.stripe_payment_method_id))
            continue
        sub.mode, sub.odoo_sale_order_id = SubscriptionMode.LIVE, order.sale_order_id
        attempts.append(_record(
            sub, GoLiveAction.GO_LIVE, ok=True, checks=pre.checks,
            message=f"live: sale.order {order.sale_order_id}, payment.token {order.payment_token_id}",
            started_by=started_by, odoo_sale_order_id=order.sale_order_id,
            odoo_payment_token_id=order.payment_token_id,
            stripe_payment_method_id=pre.stripe_payment_method_id,
        ))
    return attempts


def first_live_invoice(subscription: Subscription):
    return (Invoice.objects.filter(subscription=subscription).order_by("created_at").first()
            or Invoice.objects.filter(lines__subscription=subscription).order_by("created_at").first())


def revert_to_shadow(*, subscription: Subscription, gateway: LiveOrderGateway | None = None,
                     started_by: str = "") -> GoLiveAttempt:
    """Back to shadow, allowed only until the subscription's first live invoice."""
    if subscription.mode != SubscriptionMode.LIVE:
        return _record(subscription, GoLiveAction.REVERT, ok=False, message="subscription is not live",
                       started_by=started_by)
    invoice = first_live_invoice(subscription)
    if invoice is not None:
        return _record(subscription, GoLiveAction.REVERT, ok=False, started_by=started_by,
                       message=f"already invoiced live ({invoice}); it can no longer go back to shadow")
    try:
        gateway = gateway or live_order_gateway()
        gateway.return_to_shadow(subscription=subscription)
    except Exception as exc:
        logger.exception("revert of %s failed in Odoo", subscription)
        return _record(subscription, GoLiveAction.REVERT, ok=False, started_by=started_by,
                       message=f"Odoo refused: {type(exc).__name__}: {exc}")
    with transaction.atomic():
        closed_order = subscription.odoo_sale_order_id
        # A shadow subscription carries no Odoo order: nothing downstream may bill it.
        Subscription.objects.filter(pk=subscription.pk).update(
            mode=SubscriptionMode.SHADOW, odoo_sale_order_id=None, updated_at=timezone.now())
        subscription.mode, subscription.odoo_sale_order_id = SubscriptionMode.SHADOW, None
        return _record(subscription, GoLiveAction.REVERT, ok=True, started_by=started_by,
                       message=f"back to shadow; Odoo order {closed_order} closed",
                       odoo_sale_order_id=closed_order)


def latest_attempts(subscription_ids: list) -> dict:
    """subscription id -> its most recent GoLiveAttempt (for the admin)."""
    latest: dict = {}
    for attempt in GoLiveAttempt.objects.filter(subscription_id__in=subscription_ids).order_by("subscription_id", "-created_at"):
        latest.setdefault(attempt.subscription_id, attempt)
    return latest
