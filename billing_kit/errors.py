"""The error convention of every app: domain exceptions carrying one of Lago's error codes.

Services, selectors and views raise these; nothing below the HTTP edge knows a status
code. ``billing_kit.http`` maps each class to its HTTP status and renders Lago's body
``{"status", "error", "code", "error_details"}``.
"""
from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    """Lago's error codes (``code`` of the body, and the items of ``error_details``)."""

    # Request shape
    BAD_REQUEST = "bad_request"
    INVALID_JSON = "invalid_json"
    # Field-level validation (error_details items)
    VALIDATION_ERRORS = "validation_errors"
    VALUE_IS_MANDATORY = "value_is_mandatory"
    VALUE_IS_INVALID = "value_is_invalid"
    VALUE_IS_TOO_LONG = "value_is_too_long"
    VALUE_IS_OUT_OF_RANGE = "value_is_out_of_range"
    VALUE_ALREADY_EXIST = "value_already_exist"
    URL_IS_INVALID = "url_is_invalid"
    NOT_SUPPORTED = "not_supported"
    INVALID_AMOUNT = "invalid_amount"
    INVALID_FREE_UNITS = "invalid_free_units"
    INVALID_PACKAGE_SIZE = "invalid_package_size"
    INVALID_UNIT_BATCH = "invalid_unit_batch"
    INVALID_PROPERTIES = "invalid_properties"
    INVALID_FORMAT = "invalid_format"
    INVALID_TIMEZONE = "invalid_timezone"
    TOO_MANY_EVENTS = "too_many_events"
    PERIOD_CLOSED = "period_closed"
    PAYLOAD_MISMATCH = "payload_mismatch"
    LIMIT_REACHED = "limit_reached"
    IS_DELETED = "is_deleted"
    # Resources
    RESOURCE_NOT_FOUND = "resource_not_found"
    CUSTOMER_NOT_FOUND = "customer_not_found"
    PLAN_NOT_FOUND = "plan_not_found"
    BILLABLE_METRIC_NOT_FOUND = "billable_metric_not_found"
    SUBSCRIPTION_NOT_FOUND = "subscription_not_found"
    EVENT_NOT_FOUND = "event_not_found"
    INVOICE_NOT_FOUND = "invoice_not_found"
    CREDIT_NOTE_NOT_FOUND = "credit_note_not_found"
    WEBHOOK_ENDPOINT_NOT_FOUND = "webhook_endpoint_not_found"
    CHARGE_NOT_FOUND = "charge_not_found"
    METADATA_NOT_FOUND = "metadata_not_found"
    ADD_ON_NOT_FOUND = "add_on_not_found"
    WALLET_NOT_FOUND = "wallet_not_found"
    # State violations (Lago answers these with 405)
    NO_ACTIVE_SUBSCRIPTION = "no_active_subscription"
    PLAN_IN_USE = "plan_in_use"
    BILLABLE_METRIC_IN_USE = "billable_metric_in_use"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    # Everything else
    FORBIDDEN = "forbidden"
    CONFLICT = "conflict"
    IDEMPOTENCY_KEY_IN_FLIGHT = "idempotency_key_in_flight"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    TOO_MANY_REQUESTS = "too_many_requests"
    INTERNAL_ERROR = "internal_error"
    STATEMENT_TIMEOUT = "statement_timeout"
    # A call that must be answered by Odoo (an invoice action) could not reach it: retry later.
    ODOO_UNAVAILABLE = "odoo_unavailable"
    # Catalogue and ingest rules of metering (error_details items)
    NOT_COMPATIBLE_WITH_AGGREGATION_TYPE = "not_compatible_with_aggregation_type"
    NOT_COMPATIBLE_WITH_CHARGE_MODEL = "not_compatible_with_charge_model"
    MISSING_GRADUATED_RANGES = "missing_graduated_ranges"
    INVALID_GRADUATED_RANGES = "invalid_graduated_ranges"
    MISSING_VOLUME_RANGES = "missing_volume_ranges"
    INVALID_VOLUME_RANGES = "invalid_volume_ranges"
    CHARGE_IN_USE = "charge_in_use"
    NO_EVENTS = "no_events"
    BEFORE_SUBSCRIPTION_START = "before_subscription_start"
    AFTER_SUBSCRIPTION_END = "after_subscription_end"
    # estimate_fees: no charge of the event's metric is paid in advance (we have none).
    DOES_NOT_MATCH_AN_INSTANT_CHARGE = "does_not_match_an_instant_charge"
    # --- #12 catalogue (lifecycle-catalogue): Lago's "attached" rules and currencies ---
    # A plan with subscriptions: ``interval``/``amount_currency``/``code``/``pay_in_advance``/
    # ``trial_period`` and its charges' ``charge_model`` are frozen (lago-api ``plan_locked``).
    PLAN_LOCKED = "plan_locked"
    # A metric used by a charge of a plan with subscriptions: ``code``, ``aggregation_type``,
    # ``field_name``, ``recurring`` and its rounding are frozen.
    BILLABLE_METRIC_LOCKED = "billable_metric_locked"
    # The customer's currency differs from the plan's (lago-api ``currencies_does_not_match``).
    CURRENCIES_DOES_NOT_MATCH = "currencies_does_not_match"
    # --- end #12 catalogue ---
    # --- #14 wallets (error_details items, as lago-api's wallet validators) ---
    WALLET_ALREADY_EXISTS = "wallet_already_exists"
    INVALID_RATE_AMOUNT = "invalid_rate_amount"
    INVALID_PAID_CREDITS = "invalid_paid_credits"
    INVALID_GRANTED_CREDITS = "invalid_granted_credits"
    INVALID_VOIDED_CREDITS = "invalid_voided_credits"
    INVALID_EXPIRATION_AT = "invalid_expiration_at"
    INSUFFICIENT_CREDITS = "insufficient_credits"
    WALLET_IS_TERMINATED = "wallet_is_terminated"
    # recurring_transaction_rules: more than one rule, or a rule Lago's validator refuses
    INVALID_NUMBER_OF_RECURRING_RULES = "invalid_number_of_recurring_rules"
    INVALID_RECURRING_RULE = "invalid_recurring_rule"
    # --- #14 coupons ---
    COUPON_NOT_FOUND = "coupon_not_found"
    APPLIED_COUPON_NOT_FOUND = "applied_coupon_not_found"
    # A coupon that is not reusable is already applied to the customer (lago-api).
    COUPON_IS_NOT_REUSABLE = "coupon_is_not_reusable"
    # --- end #14 coupons ---
    # --- #14 credit notes (lago-api CreditNotes::CreateService / ValidateService / ValidateItemService) ---
    FEE_NOT_FOUND = "fee_not_found"
    INVALID_TYPE_OR_STATUS = "invalid_type_or_status"
    INVALID_VALUE = "invalid_value"
    DOES_NOT_MATCH_ITEM_AMOUNTS = "does_not_match_item_amounts"
    HIGHER_THAN_REMAINING_FEE_AMOUNT = "higher_than_remaining_fee_amount"
    HIGHER_THAN_REMAINING_INVOICE_AMOUNT = "higher_than_remaining_invoice_amount"
    CANNOT_REFUND_UNPAID_INVOICE = "cannot_refund_unpaid_invoice"
    # --- end #14 credit notes ---


class BillingError(Exception):
    """Base of every error a client may see: a Lago code, a message and details.

    The class says what went wrong; ``billing_kit.http.STATUS_BY_ERROR`` says which HTTP
    status that is.
    """

    error = "Internal Server Error"
    code: str | None = ErrorCode.INTERNAL_ERROR

    def __init__(self, code: str | None = None, *, error: str | None = None,
                 error_details: Any = None) -> None:
        if code is not None:
            self.code = code
        if error is not None:
            self.error = error
        self.error_details = error_details
        super().__init__(self.error)


class BadRequest(BillingError):
    code = ErrorCode.BAD_REQUEST

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(code, error=f"BadRequest: {message}")


class Unauthorized(BillingError):
    error = "Unauthorized"
    code = None


class Forbidden(BillingError):
    error = "Forbidden"
    code = ErrorCode.FORBIDDEN


class NotFound(BillingError):
    """``code`` is ``<resource>_not_found``, e.g. ``ErrorCode.CUSTOMER_NOT_FOUND``."""

    error = "Not Found"
    code = ErrorCode.RESOURCE_NOT_FOUND


class NotAllowed(BillingError):
    """A state violation such as ``no_active_subscription`` (Lago answers 405)."""

    error = "Method Not Allowed"
    code = ErrorCode.METHOD_NOT_ALLOWED


class Conflict(BillingError):
    error = "Conflict"
    code = ErrorCode.CONFLICT


class PayloadTooLarge(BillingError):
    error = "Payload Too Large"
    code = ErrorCode.PAYLOAD_TOO_LARGE


class UnsupportedMediaType(BillingError):
    error = "Unsupported Media Type"
    code = ErrorCode.UNSUPPORTED_MEDIA_TYPE


class TooManyRequests(BillingError):
    error = "Too Many Requests"
    code = ErrorCode.TOO_MANY_REQUESTS


class StatementTimeout(BillingError):
    """A database statement of the request ran longer than API_STATEMENT_TIMEOUT_MS."""

    error = "Service Unavailable"
    code = ErrorCode.STATEMENT_TIMEOUT


class ServiceUnavailable(BillingError):
    """A system the answer depends on (Odoo) is unreachable right now: the client may retry."""

    error = "Service Unavailable"
    code = ErrorCode.ODOO_UNAVAILABLE


class ValidationFailed(BillingError):
    """Field errors such as ``{"code": [ErrorCode.VALUE_IS_MANDATORY]}``."""

    error = "Unprocessable Entity"
    code = ErrorCode.VALIDATION_ERRORS

    def __init__(self, error_details: dict[str, Any], *, code: str | None = None) -> None:
        super().__init__(code, error_details=error_details)
