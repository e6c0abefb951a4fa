"""``/organizations``: Lago's organization is the calling Service."""
from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.response import Response

from billing_kit.docs import LAGO_JSON
from billing_kit.parsing import require_root
from billing_kit.views import ServiceAPIView
from billing_kit.wire import envelope
from identity import services
from identity.models import MAX_INVOICE_GRACE_DAYS
from identity.renderers import render_organization
from .schemas import ORGANIZATION


class OrganizationBillingConfigurationInput(serializers.Serializer):
    # null: back to the deployment default (RATING_GRACE_SECONDS)
    invoice_grace_period = serializers.IntegerField(min_value=0, max_value=MAX_INVOICE_GRACE_DAYS, required=False,
                                                    allow_null=True)


class OrganizationUpdateInput(serializers.Serializer):
    name = serializers.CharField(max_length=200, required=False)
    default_currency = serializers.RegexField(r"^[A-Z]{3}$", required=False)
    billing_configuration = OrganizationBillingConfigurationInput(required=False)


class OrganizationView(ServiceAPIView):
    @extend_schema(operation_id="organization_retrieve", responses={200: envelope("organization", ORGANIZATION), 401: LAGO_JSON},
                   description="The calling service, as Lago's organization.")
    def get(self, request) -> Response:
        return Response({"organization": render_organization(self.service)})

    @extend_schema(operation_id="organization_update",
                   responses={200: envelope("organization", ORGANIZATION), 400: LAGO_JSON, 401: LAGO_JSON, 422: LAGO_JSON},
                   request=inline_serializer("OrganizationBody", {"organization": OrganizationUpdateInput()}))
    def put(self, request) -> Response:
        payload = OrganizationUpdateInput(data=require_root(request, "organization"))
        payload.is_valid(raise_exception=True)
        service = services.update_organization(service=self.service, data=payload.validated_data)
        return Response({"organization": render_organization(service)})
