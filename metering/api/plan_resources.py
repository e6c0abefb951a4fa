"""Lago's plan sub-resources: ``/plans/{code}/charges[/{charge_code}]`` and
``/plans/{code}/metadata[/{key}]``. A charge's code is its metric's code."""
from __future__ import annotations

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from billing_kit.docs import ERRORS, LAGO_OBJECT
from billing_kit.pagination import paginate
from billing_kit.params import PAGINATION, documented
from billing_kit.parsing import require_root
from billing_kit.views import ServiceAPIView
from billing_kit.wire import envelope, page
from metering import services
from metering.api.inputs import ChargeInput
from metering.renderers import render_charge

from .views import plan_or_404
from .schemas import CHARGE, PLAN_METADATA

PLAN_CODE = OpenApiParameter("plan_code", OpenApiTypes.STR, OpenApiParameter.PATH, description="The plan's code.")
CHARGE_CODE = OpenApiParameter("charge_code", OpenApiTypes.STR, OpenApiParameter.PATH,
                               description="The charge's code: its billable metric's code.")
METADATA_KEY = OpenApiParameter("key", OpenApiTypes.STR, OpenApiParameter.PATH, description="A metadata key.")

_CHARGE_BODY = inline_serializer("PlanChargeBody", {"charge": ChargeInput()})
_METADATA_BODY = inline_serializer("PlanMetadataBody", {"metadata": serializers.DictField(
    child=serializers.CharField(allow_null=True, max_length=255), help_text="String keys, string or null values.")})
_METADATA_RESPONSE = inline_serializer("PlanMetadataResponse", {"metadata": serializers.DictField(
    child=serializers.CharField(allow_null=True), allow_null=True)})


def _charge_input(request: Request) -> dict[str, Any]:
    payload = ChargeInput(data=require_root(request, "charge"))
    payload.is_valid(raise_exception=True)
    return dict(payload.validated_data)


class PlanChargeListView(ServiceAPIView):
    @documented(operation_id="plan_charges_list", parameters=[PLAN_CODE], query=PAGINATION,
                responses={200: page("charges", CHARGE), **ERRORS})
    def get(self, request: Request, plan_code: str) -> Response:
        plan = plan_or_404(self.service, plan_code)
        charges = plan.charges.select_related("metric", "plan").prefetch_related("tiers").order_by("-created_at", "id")
        items, meta = paginate(self.query(request), charges)
        return Response({"charges": [render_charge(c) for c in items], "meta": meta})

    @extend_schema(operation_id="plan_charges_create", parameters=[PLAN_CODE], request=_CHARGE_BODY,
                   responses={200: envelope("charge", CHARGE), **ERRORS},
                   description="Adds a charge, with the rules of a plan PUT (applies from each "
                               "subscription's next window).")
    def post(self, request: Request, plan_code: str) -> Response:
        plan = plan_or_404(self.service, plan_code)
        charge = services.create_plan_charge(plan=plan, data=_charge_input(request))
        return Response({"charge": render_charge(charge)})


class PlanChargeDetailView(ServiceAPIView):
    @extend_schema(operation_id="plan_charges_retrieve", parameters=[PLAN_CODE, CHARGE_CODE],
                   responses={200: envelope("charge", CHARGE), **ERRORS})
    def get(self, request: Request, plan_code: str, charge_code: str) -> Response:
        plan = plan_or_404(self.service, plan_code)
        return Response({"charge": render_charge(services.plan_charge(plan=plan, code=charge_code))})

    @extend_schema(operation_id="plan_charges_update", parameters=[PLAN_CODE, CHARGE_CODE], request=_CHARGE_BODY,
                   responses={200: envelope("charge", CHARGE), **ERRORS})
    def put(self, request: Request, plan_code: str, charge_code: str) -> Response:
        plan = plan_or_404(self.service, plan_code)
        charge = services.plan_charge(plan=plan, code=charge_code)
        payload = ChargeInput(data=require_root(request, "charge"), partial=True)
        payload.is_valid(raise_exception=True)
        charge = services.update_plan_charge(plan=plan, charge=charge, data=dict(payload.validated_data))
        return Response({"charge": render_charge(charge)})

    @extend_schema(operation_id="plan_charges_destroy", parameters=[PLAN_CODE, CHARGE_CODE],
                   responses={200: envelope("charge", CHARGE), **ERRORS},
                   description="422 charge_in_use once usage was rated with the charge.")
    def delete(self, request: Request, plan_code: str, charge_code: str) -> Response:
        plan = plan_or_404(self.service, plan_code)
        charge = services.plan_charge(plan=plan, code=charge_code)
        rendered = render_charge(charge)
        services.delete_plan_charge(plan=plan, charge=charge)
        return Response({"charge": rendered})


class PlanMetadataView(ServiceAPIView):
    @extend_schema(operation_id="plan_metadata_replace", parameters=[PLAN_CODE], request=_METADATA_BODY,
                   responses={200: PLAN_METADATA, **ERRORS})
    def post(self, request: Request, plan_code: str) -> Response:
        plan = plan_or_404(self.service, plan_code)
        return Response({"metadata": services.replace_plan_metadata(
            plan=plan, metadata=require_root(request, "metadata"))})

    @extend_schema(operation_id="plan_metadata_merge", parameters=[PLAN_CODE], request=_METADATA_BODY,
                   responses={200: PLAN_METADATA, **ERRORS})
    def patch(self, request: Request, plan_code: str) -> Response:
        plan = plan_or_404(self.service, plan_code)
        return Response({"metadata": services.merge_plan_metadata(
            plan=plan, metadata=require_root(request, "metadata"))})

    @extend_schema(operation_id="plan_metadata_destroy", parameters=[PLAN_CODE],
                   responses={200: PLAN_METADATA, **ERRORS})
    def delete(self, request: Request, plan_code: str) -> Response:
        plan = plan_or_404(self.service, plan_code)
        return Response({"metadata": services.replace_plan_metadata(plan=plan, metadata=None)})


class PlanMetadataKeyView(ServiceAPIView):
    @extend_schema(operation_id="plan_metadata_key_destroy", parameters=[PLAN_CODE, METADATA_KEY],
                   responses={200: PLAN_METADATA, **ERRORS})
    def delete(self, request: Request, plan_code: str, key: str) -> Response:
        plan = plan_or_404(self.service, plan_code)
        return Response({"metadata": services.delete_plan_metadata_key(plan=plan, key=key)})
