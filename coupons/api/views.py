"""``/coupons``, ``/applied_coupons`` and ``/customers/{external_id}/applied_coupons/{id}`` as Lago.

Lago sends no webhook for coupons or applied coupons (its webhook list has none), so none is sent.
"""
from __future__ import annotations

import uuid
from typing import Any

from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from billing_kit.docs import ERRORS, LAGO_OBJECT
from billing_kit.errors import ErrorCode, NotFound, ValidationFailed
from billing_kit.pagination import paginate
from billing_kit.params import PAGINATION, QueryParam, documented
from billing_kit.parsing import require_root
from billing_kit.views import ServiceAPIView
from billing_kit.wire import envelope, page
from coupons import selectors, services
from coupons.api.inputs import AppliedCouponInput, CouponInput, CouponUpdateInput
from coupons.api.schemas import APPLIED_COUPON, COUPON
from coupons.models import AppliedCouponStatus, Coupon
from coupons.renderers import render_applied_coupon, render_coupon
from identity import selectors as identity_selectors
from identity.models import Service

CODE = OpenApiParameter("code", OpenApiTypes.STR, OpenApiParameter.PATH, description="The coupon's code.")
CUSTOMER = OpenApiParameter("external_id", OpenApiTypes.STR, OpenApiParameter.PATH,
                            description="The customer's id in the calling app.")
APPLIED_ID = OpenApiParameter("applied_coupon_id", OpenApiTypes.STR, OpenApiParameter.PATH,
                              description="The applied coupon's lago_id.")


def body(name: str, root: str, serializer: serializers.BaseSerializer) -> Any:
    return inline_serializer(name, {root: serializer})


def coupon_or_404(service: Service, code: str) -> Coupon:
    coupon = selectors.get_coupon(service=service, code=code)
    if coupon is None:
        raise NotFound(ErrorCode.COUPON_NOT_FOUND)
    return coupon


class CouponListView(ServiceAPIView):
    @extend_schema(operation_id="coupons_create", request=body("CouponBody", "coupon", CouponInput()),
                   responses={200: envelope("coupon", COUPON), **ERRORS})
    def post(self, request: Request) -> Response:
        payload = CouponInput(data=require_root(request, "coupon"))
        payload.is_valid(raise_exception=True)
        coupon = services.create_coupon(service=self.service, data=payload.validated_data, now=timezone.now())
        return Response({"coupon": render_coupon(coupon)})

    @documented(operation_id="coupons_list", query=PAGINATION,
                responses={200: page("coupons", COUPON), 401: LAGO_OBJECT, 422: LAGO_OBJECT})
    def get(self, request: Request) -> Response:
        items, meta = paginate(self.query(request), selectors.coupons(service=self.service))
        return Response({"coupons": [render_coupon(c) for c in items], "meta": meta})


class CouponDetailView(ServiceAPIView):
    @extend_schema(operation_id="coupons_retrieve", parameters=[CODE],
                   responses={200: envelope("coupon", COUPON), **ERRORS})
    def get(self, request: Request, code: str) -> Response:
        return Response({"coupon": render_coupon(coupon_or_404(self.service, code))})

    @extend_schema(operation_id="coupons_update", parameters=[CODE],
                   request=body("CouponUpdateBody", "coupon", CouponUpdateInput()),
                   responses={200: envelope("coupon", COUPON), **ERRORS},
                   description="Once applied to a customer, only name, description and expiration change.")
    def put(self, request: Request, code: str) -> Response:
        coupon = coupon_or_404(self.service, code)
        payload = CouponUpdateInput(data=require_root(request, "coupon"))
        payload.is_valid(raise_exception=True)
        coupon = services.update_coupon(coupon=coupon, data=payload.validated_data, now=timezone.now())
        return Response({"coupon": render_coupon(coupon)})

    @extend_schema(operation_id="coupons_destroy", parameters=[CODE],
                   responses={200: envelope("coupon", COUPON), **ERRORS},
                   description="Lago's delete: the coupon is terminated and its active applications too.")
    def delete(self, request: Request, code: str) -> Response:
        coupon = services.delete_coupon(coupon=coupon_or_404(self.service, code), now=timezone.now())
        return Response({"coupon": render_coupon(coupon)})


APPLIED_STATUSES = [s for s, _ in AppliedCouponStatus.choices]


class AppliedCouponListView(ServiceAPIView):
    @extend_schema(operation_id="applied_coupons_create",
                   request=body("AppliedCouponBody", "applied_coupon", AppliedCouponInput()),
                   responses={200: envelope("applied_coupon", APPLIED_COUPON), **ERRORS})
    def post(self, request: Request) -> Response:
        payload = AppliedCouponInput(data=require_root(request, "applied_coupon"))
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        link = identity_selectors.get_link(service=self.service, external_id=data["external_customer_id"])
        if link is None:
            raise NotFound(ErrorCode.CUSTOMER_NOT_FOUND)
        coupon = selectors.get_coupon(service=self.service, code=data["coupon_code"])
        applied = services.apply_coupon(service=self.service, link=link, coupon=coupon, data=data,
                                        now=timezone.now())
        applied = selectors.applied_coupons(service=self.service).get(pk=applied.pk)
        return Response({"applied_coupon": render_applied_coupon(applied)})

    @documented(operation_id="applied_coupons_list",
                query=(*PAGINATION,
                       QueryParam("status", "Only applied coupons in this status.", enum=APPLIED_STATUSES),
                       QueryParam("external_customer_id", "Only this customer's applied coupons."),
                       QueryParam("coupon_code[]", "Only applied coupons of these coupons.", many=True),
                       QueryParam("coupon_code", "Alias of coupon_code[].", many=True)),
                responses={200: page("applied_coupons", APPLIED_COUPON), 401: LAGO_OBJECT, 422: LAGO_OBJECT})
    def get(self, request: Request) -> Response:
        query = self.query(request)
        status = query.get("status")
        if status and status not in APPLIED_STATUSES:
            raise ValidationFailed({"status": [ErrorCode.VALUE_IS_INVALID]})
        qs = selectors.applied_coupons(service=self.service, external_customer_id=query.get("external_customer_id"),
                                       status=status, coupon_codes=query.list_of("coupon_code[]", "coupon_code"))
        items, meta = paginate(query, qs)
        return Response({"applied_coupons": [render_applied_coupon(a) for a in items], "meta": meta})


class CustomerAppliedCouponView(ServiceAPIView):
    @extend_schema(operation_id="customer_applied_coupons_destroy", parameters=[CUSTOMER, APPLIED_ID],
                   responses={200: envelope("applied_coupon", APPLIED_COUPON), **ERRORS},
                   description="Terminate the customer's applied coupon (it gives nothing afterwards).")
    def delete(self, request: Request, external_id: str, applied_coupon_id: str) -> Response:
        if identity_selectors.get_link(service=self.service, external_id=external_id) is None:
            raise NotFound(ErrorCode.CUSTOMER_NOT_FOUND)
        try:
            uuid.UUID(applied_coupon_id)
        except ValueError:
            raise NotFound(ErrorCode.APPLIED_COUPON_NOT_FOUND) from None
        applied = selectors.get_applied_coupon(service=self.service, external_customer_id=external_id,
                                               applied_id=applied_coupon_id)
        if applied is None:
            raise NotFound(ErrorCode.APPLIED_COUPON_NOT_FOUND)
        services.terminate_applied_coupon(applied=applied, now=timezone.now())
        applied = selectors.applied_coupons(service=self.service).get(pk=applied.pk)
        return Response({"applied_coupon": render_applied_coupon(applied)})


class CustomerAppliedCouponListView(ServiceAPIView):
    @documented(operation_id="customer_applied_coupons_list", parameters=[CUSTOMER], query=PAGINATION,
                responses={200: page("applied_coupons", APPLIED_COUPON), 401: LAGO_OBJECT, 404: LAGO_OBJECT, 422: LAGO_OBJECT})
    def get(self, request: Request, external_id: str) -> Response:
        if identity_selectors.get_link(service=self.service, external_id=external_id) is None:
            raise NotFound(ErrorCode.CUSTOMER_NOT_FOUND)
        items, meta = paginate(self.query(request),
                               selectors.applied_coupons(service=self.service, external_customer_id=external_id))
        return Response({"applied_coupons": [render_applied_coupon(a) for a in items], "meta": meta})
