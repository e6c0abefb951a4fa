"""``/add_ons``: Lago's add-on CRUD, scoped to the calling service."""
from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework.request import Request
from rest_framework.response import Response

from billing_kit.docs import ERRORS, LAGO_OBJECT
from billing_kit.errors import ErrorCode, NotFound
from billing_kit.pagination import paginate
from billing_kit.params import PAGINATION, documented
from billing_kit.parsing import require_root
from billing_kit.views import ServiceAPIView
from billing_kit.wire import envelope, page
from identity.models import Service
from metering import selectors
from metering.api.inputs import AddOnInput, AddOnUpdateInput
from metering.api.schemas import ADD_ON
from metering.models import AddOn
from metering.renderers import render_add_on
from metering.services import add_ons as services

CODE = OpenApiParameter("code", OpenApiTypes.STR, OpenApiParameter.PATH, description="The add-on's code.")


def add_on_or_404(service: Service, code: str) -> AddOn:
    add_on = selectors.get_add_on(service=service, code=code)
    if add_on is None:
        raise NotFound(ErrorCode.ADD_ON_NOT_FOUND)
    return add_on


class AddOnListView(ServiceAPIView):
    @extend_schema(operation_id="add_ons_create",
                   request=inline_serializer("AddOnBody", {"add_on": AddOnInput()}),
                   responses={200: envelope("add_on", ADD_ON), **ERRORS})
    def post(self, request: Request) -> Response:
        payload = AddOnInput(data=require_root(request, "add_on"))
        payload.is_valid(raise_exception=True)
        add_on = services.create_add_on(service=self.service, data=payload.validated_data)
        return Response({"add_on": render_add_on(add_on)})

    @documented(operation_id="add_ons_list", query=PAGINATION,
                responses={200: page("add_ons", ADD_ON), 401: LAGO_OBJECT, 422: LAGO_OBJECT})
    def get(self, request: Request) -> Response:
        items, meta = paginate(self.query(request), selectors.add_ons(service=self.service))
        return Response({"add_ons": [render_add_on(a) for a in items], "meta": meta})


class AddOnDetailView(ServiceAPIView):
    @extend_schema(operation_id="add_ons_retrieve", parameters=[CODE], responses={200: envelope("add_on", ADD_ON), **ERRORS})
    def get(self, request: Request, code: str) -> Response:
        return Response({"add_on": render_add_on(add_on_or_404(self.service, code))})

    @extend_schema(operation_id="add_ons_update", parameters=[CODE],
                   request=inline_serializer("AddOnUpdateBody", {"add_on": AddOnUpdateInput()}),
                   responses={200: envelope("add_on", ADD_ON), **ERRORS})
    def put(self, request: Request, code: str) -> Response:
        add_on = add_on_or_404(self.service, code)
        payload = AddOnUpdateInput(data=require_root(request, "add_on"))
        payload.is_valid(raise_exception=True)
        add_on = services.update_add_on(add_on=add_on, data=payload.validated_data)
        return Response({"add_on": render_add_on(add_on)})

    @extend_schema(operation_id="add_ons_destroy", parameters=[CODE],
                   responses={200: envelope("add_on", ADD_ON), **ERRORS})
    def delete(self, request: Request, code: str) -> Response:
        add_on = services.delete_add_on(add_on=add_on_or_404(self.service, code))
        return Response({"add_on": render_add_on(add_on)})
