"""``/organizations``: Lago's organization is the calling Service."""
from __future__ import annotations

from rest_framework import serializers
from rest_framework.response import Response

from identity.api.formatting import iso_seconds
from identity.models import Service

from .parsing import require_root
from .views import ServiceAPIView


def render_organization(service: Service) -> dict:
    return {
        "lago_id": str(service.pk),
        "name": service.name,
        "code": service.code,
        "default_currency": service.default_currency,
        "created_at": iso_seconds(service.created_at),
    }


class OrganizationUpdateInput(serializers.Serializer):
    name = serializers.CharField(max_length=200, required=False)
    default_currency = serializers.RegexField(r"^[A-Z]{3}$", required=False)


class OrganizationView(ServiceAPIView):
    def get(self, request) -> Response:
        return Response({"organization": render_organization(self.service)})

    def put(self, request) -> Response:
        payload = OrganizationUpdateInput(data=require_root(request, "organization"))
        payload.is_valid(raise_exception=True)
        service = self.service
        for field, value in payload.validated_data.items():
            setattr(service, field, value)
        service.save(update_fields=[*payload.validated_data, "updated_at"])
        return Response({"organization": render_organization(service)})
