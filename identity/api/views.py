"""``/customers``: upsert and list the calling service's customers.

A customer's own routes (``/customers/{external_id}`` and what hangs below it) answer
from ``metering.api.customers``: deleting a customer ends its subscriptions, and its
usage is metering's.
"""
from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework.response import Response

from billing_kit.docs import ERRORS, LAGO_OBJECT
from billing_kit.pagination import paginate
from billing_kit.params import PAGINATION, QueryParam, documented
from billing_kit.parsing import require_root
from billing_kit.views import ServiceAPIView
from billing_kit.wire import envelope, page
from identity import selectors, services
from identity.api.inputs import CustomerInput
from identity.renderers import render_customer
from .schemas import CUSTOMER


LIST_QUERY = (
    *PAGINATION,
    QueryParam("external_id", "Exact external id."),
    QueryParam("search_term", "Substring of external id, name or email."),
    QueryParam("currencies[]", "Currency codes.", many=True),
    QueryParam("currencies", "Alias of currencies[].", many=True, deprecated=True),
    QueryParam("countries[]", "Country codes.", many=True),
    QueryParam("countries", "Alias of countries[].", many=True, deprecated=True),
)


def customer_body(name="CustomerBody"):
    return inline_serializer(name, {"customer": CustomerInput()})


class CustomerListView(ServiceAPIView):
    @extend_schema(operation_id="customers_upsert", request=customer_body(),
                   responses={200: envelope("customer", CUSTOMER), **ERRORS},
                   description="Create or update (by external_id) the calling service's customer.")
    def post(self, request):
        payload = CustomerInput(data=require_root(request, "customer"))
        payload.is_valid(raise_exception=True)
        result = services.upsert_customer(service=self.service, data=payload.validated_data)
        return Response({"customer": render_customer(result.link)})

    @documented(operation_id="customers_list", query=LIST_QUERY,
                responses={200: page("customers", CUSTOMER), 401: LAGO_OBJECT, 422: LAGO_OBJECT})
    def get(self, request):
        query = self.query(request)
        links = selectors.list_links(
            service=self.service, external_id=query.get("external_id"), search_term=query.get("search_term"),
            currencies=query.list_of("currencies[]", "currencies"),
            countries=query.list_of("countries[]", "countries"),
        )
        items, meta = paginate(query, links)
        return Response({"customers": [render_customer(link) for link in items], "meta": meta})
