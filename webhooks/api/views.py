"""``/api/v1/webhook_endpoints`` in Lago's shape, plus ``rotate_secret``."""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from django.http import HttpResponse
from rest_framework.response import Response

from billing_kit.docs import LAGO_JSON
from billing_kit.errors import ErrorCode, NotFound, ValidationFailed
from billing_kit.pagination import paginate
from billing_kit.params import PAGINATION, documented
from billing_kit.parsing import require_root
from billing_kit.views import ServiceAPIView
from billing_kit.wire import envelope, page
from webhooks import keys, selectors, services, signing
from webhooks.models import WebhookEndpoint

from .renderers import render_webhook_endpoint
from .schemas import ENDPOINT_INPUT, ENDPOINT_UPDATE_INPUT, WEBHOOK_ENDPOINT

ROOT = "webhook_endpoint"


class _EndpointInput(serializers.Serializer):
    webhook_url = serializers.CharField(max_length=2048, trim_whitespace=True)
    name = serializers.CharField(max_length=200, required=False, allow_blank=True, allow_null=True)
    event_types = serializers.ListField(
        child=serializers.CharField(max_length=64), required=False, allow_null=True, max_length=100,
    )
    # What X-Lago-Signature carries, as Lago (default jwt); Standard Webhooks headers always.
    signature_algo = serializers.ChoiceField(choices=list(signing.LAGO_ALGOS), required=False)


class CreateEndpointInput(_EndpointInput):
    pass


class UpdateEndpointInput(_EndpointInput):
    webhook_url = serializers.CharField(max_length=2048, trim_whitespace=True, required=False)


_LAGO_ID = OpenApiParameter("lago_id", OpenApiTypes.STR, OpenApiParameter.PATH,
                            description="The webhook endpoint's lago_id.")


def _lookup(view: ServiceAPIView, lago_id: str) -> WebhookEndpoint:
    endpoint = selectors.endpoint_for(service=view.service, lago_id=lago_id)
    if endpoint is None:
        raise NotFound(ErrorCode.WEBHOOK_ENDPOINT_NOT_FOUND)
    return endpoint


def _one(endpoint: WebhookEndpoint, *, secret: str | None = None) -> Response:
    return Response({ROOT: render_webhook_endpoint(endpoint, secret=secret)})


class WebhookEndpointListView(ServiceAPIView):
    @documented(operation_id="webhook_endpoints_list", query=PAGINATION,
                responses={200: page("webhook_endpoints", WEBHOOK_ENDPOINT), 401: LAGO_JSON})
    def get(self, request) -> Response:
        items, meta = paginate(self.query(request), selectors.endpoints_for(service=self.service))
        return Response({"webhook_endpoints": [render_webhook_endpoint(e) for e in items], "meta": meta})

    @extend_schema(operation_id="webhook_endpoints_create",
                   request={"application/json": envelope(ROOT, ENDPOINT_INPUT)},
                   responses={200: envelope("webhook_endpoint", WEBHOOK_ENDPOINT), 400: LAGO_JSON, 401: LAGO_JSON, 422: LAGO_JSON})
    def post(self, request) -> Response:
        payload = CreateEndpointInput(data=require_root(request, ROOT))
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        try:
            issued = services.create_endpoint(
                service=self.service, url=data["webhook_url"], name=data.get("name") or "",
                event_types_filter=data.get("event_types"),
                signature_algo=data.get("signature_algo") or signing.ALGO_JWT,
            )
        except services.EndpointInvalid as exc:
            raise ValidationFailed(exc.error_details) from None
        return _one(issued.endpoint, secret=issued.secret)


class WebhookEndpointDetailView(ServiceAPIView):
    @extend_schema(operation_id="webhook_endpoints_retrieve", parameters=[_LAGO_ID],
                   responses={200: envelope("webhook_endpoint", WEBHOOK_ENDPOINT), 401: LAGO_JSON, 404: LAGO_JSON})
    def get(self, request, lago_id: str) -> Response:
        return _one(_lookup(self, lago_id))

    @extend_schema(operation_id="webhook_endpoints_update", parameters=[_LAGO_ID],
                   request={"application/json": envelope(ROOT, ENDPOINT_UPDATE_INPUT)},
                   responses={200: envelope("webhook_endpoint", WEBHOOK_ENDPOINT), 400: LAGO_JSON, 401: LAGO_JSON, 404: LAGO_JSON, 422: LAGO_JSON})
    def put(self, request, lago_id: str) -> Response:
        endpoint = _lookup(self, lago_id)
        payload = UpdateEndpointInput(data=require_root(request, ROOT))
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        changes = {}
        if "webhook_url" in data:
            changes["url"] = data["webhook_url"]
        if "name" in data:
            changes["name"] = data["name"] or ""
        if "event_types" in data:
            changes["event_types_filter"] = data["event_types"]
        if data.get("signature_algo"):
            changes["signature_algo"] = data["signature_algo"]
        try:
            endpoint = services.update_endpoint(endpoint=endpoint, **changes)
        except services.EndpointInvalid as exc:
            raise ValidationFailed(exc.error_details) from None
        return _one(endpoint)

    @extend_schema(operation_id="webhook_endpoints_destroy", parameters=[_LAGO_ID],
                   responses={200: envelope("webhook_endpoint", WEBHOOK_ENDPOINT), 401: LAGO_JSON, 404: LAGO_JSON})
    def delete(self, request, lago_id: str) -> Response:
        return _one(services.delete_endpoint(endpoint=_lookup(self, lago_id)))


class WebhookEndpointRotateSecretView(ServiceAPIView):
    @extend_schema(operation_id="webhook_endpoints_rotate_secret", parameters=[_LAGO_ID], request=None,
                   responses={200: envelope("webhook_endpoint", WEBHOOK_ENDPOINT), 401: LAGO_JSON, 404: LAGO_JSON},
                   description="Issue a new signing secret (shown once).")
    def post(self, request, lago_id: str) -> Response:
        issued = services.rotate_secret(endpoint=_lookup(self, lago_id))
        return _one(issued.endpoint, secret=issued.secret)


class WebhookPublicKeyView(ServiceAPIView):
    """Lago's ``GET /webhooks/json_public_key``: the key that verifies ``jwt`` signatures."""

    @extend_schema(operation_id="webhooks_json_public_key",
                   responses={200: inline_serializer("WebhookPublicKey", {"webhook": inline_serializer(
                       "WebhookPublicKeyObject", {"public_key": serializers.CharField(
                           help_text="base64 of the PEM public key (RS256)")})}), 401: LAGO_JSON},
                   description="The public key of X-Lago-Signature when signature_algo is jwt: "
                               "jwt.decode(signature, base64.b64decode(public_key), algorithms=['RS256'], "
                               "issuer=WEBHOOK_JWT_ISSUER)['data'] == body.")
    def get(self, request) -> Response:
        return Response({"webhook": {"public_key": keys.public_key_base64()}})


class WebhookPlainPublicKeyView(ServiceAPIView):
    """Lago's deprecated ``GET /webhooks/public_key``: the same key as plain text."""

    @extend_schema(operation_id="webhooks_public_key", responses={(200, "text/plain"): OpenApiTypes.STR,
                                                                    401: LAGO_JSON})
    def get(self, request) -> HttpResponse:
        return HttpResponse(keys.public_key_base64(), content_type="text/plain; charset=utf-8")
