"""``/wallets`` and ``/wallet_transactions``: thin, scoped to the calling service."""
from __future__ import annotations

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
from billing_kit.wire import array, envelope, obj, page
from identity import selectors as identity_selectors
from identity.models import Service
from wallets import selectors, services
from wallets.api.inputs import WalletInput, WalletTransactionInput, WalletUpdateInput
from wallets.api.schemas import WALLET, WALLET_METADATA, WALLET_TRANSACTION
from wallets.models import TransactionKind, TransactionStatus, TransactionType, Wallet
from wallets.renderers import render_transaction, render_wallet

WALLET_ID = OpenApiParameter("lago_id", OpenApiTypes.STR, OpenApiParameter.PATH, description="The wallet's lago_id.")
METADATA_KEY = OpenApiParameter("key", OpenApiTypes.STR, OpenApiParameter.PATH, description="A metadata key.")
_METADATA_BODY = inline_serializer("WalletMetadataBody", {"metadata": serializers.DictField(
    child=serializers.CharField(allow_null=True, max_length=255), help_text="String keys, string or null values.")})
EXTERNAL_CUSTOMER = QueryParam("external_customer_id", "The customer's id in the calling app (required, as Lago).")
TX_FILTERS = (
    QueryParam("status", "pending, settled or failed.", enum=TransactionStatus.values),
    QueryParam("transaction_type", "inbound or outbound.", enum=TransactionType.values),
    QueryParam("transaction_status", "purchased, granted, voided or invoiced.", enum=TransactionKind.values),
)


def wallet_or_404(service: Service, lago_id: str) -> Wallet:
    wallet = selectors.wallet_by_id(service=service, lago_id=lago_id)
    if wallet is None:
        raise NotFound(ErrorCode.WALLET_NOT_FOUND)
    return wallet


def _render(wallet: Wallet) -> dict:
    fresh = selectors.wallets_for_service(service=wallet.service).get(pk=wallet.pk)
    return {"wallet": render_wallet(fresh, selectors.balances([fresh])[fresh.pk])}


class WalletListView(ServiceAPIView):
    @extend_schema(operation_id="wallets_create", request=inline_serializer("WalletBody", {"wallet": WalletInput()}),
                   responses={200: envelope("wallet", WALLET), **ERRORS})
    def post(self, request: Request) -> Response:
        payload = WalletInput(data=require_root(request, "wallet"))
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        if data.get("billing_entity_code") and data["billing_entity_code"] != self.service.code:
            raise ValidationFailed({"billing_entity_code": [ErrorCode.NOT_SUPPORTED]})
        link = identity_selectors.get_link(service=self.service, external_id=data["external_customer_id"])
        if link is None:
            raise NotFound(ErrorCode.CUSTOMER_NOT_FOUND)
        return Response(_render(services.create_wallet(service=self.service, link=link, data=data)))

    @documented(operation_id="wallets_list", query=(EXTERNAL_CUSTOMER, *PAGINATION),
                responses={200: page("wallets", WALLET), 401: LAGO_OBJECT, 404: LAGO_OBJECT, 422: LAGO_OBJECT})
    def get(self, request: Request) -> Response:
        query = self.query(request)
        external_id = query.get(EXTERNAL_CUSTOMER.name)
        if not external_id:
            raise ValidationFailed({EXTERNAL_CUSTOMER.name: [ErrorCode.VALUE_IS_MANDATORY]})
        link = identity_selectors.get_link(service=self.service, external_id=external_id)
        if link is None:
            raise NotFound(ErrorCode.CUSTOMER_NOT_FOUND)
        items, meta = paginate(query, selectors.wallets_for_service(service=self.service).filter(account_link=link))
        figures = selectors.balances(list(items))
        return Response({"wallets": [render_wallet(w, figures[w.pk]) for w in items], "meta": meta})


class CustomerWalletListView(ServiceAPIView):
    """Lago's ``GET /customers/{external_customer_id}/wallets``: the list of ``GET /wallets?external_customer_id=``."""

    @documented(operation_id="customers_wallets_list",
                parameters=[OpenApiParameter("external_id", OpenApiTypes.STR, OpenApiParameter.PATH,
                                             description="The customer's id in the calling app.")],
                query=PAGINATION,
                responses={200: page("wallets", WALLET), 401: LAGO_OBJECT, 404: LAGO_OBJECT, 422: LAGO_OBJECT})
    def get(self, request: Request, external_id: str) -> Response:
        query = self.query(request)
        link = identity_selectors.get_link(service=self.service, external_id=external_id)
        if link is None:
            raise NotFound(ErrorCode.CUSTOMER_NOT_FOUND)
        items, meta = paginate(query, selectors.wallets_for_service(service=self.service).filter(account_link=link))
        figures = selectors.balances(list(items))
        return Response({"wallets": [render_wallet(w, figures[w.pk]) for w in items], "meta": meta})


class WalletDetailView(ServiceAPIView):
    @extend_schema(operation_id="wallets_retrieve", parameters=[WALLET_ID],
                   responses={200: envelope("wallet", WALLET), **ERRORS})
    def get(self, request: Request, lago_id: str) -> Response:
        return Response(_render(wallet_or_404(self.service, lago_id)))

    @extend_schema(operation_id="wallets_update", parameters=[WALLET_ID],
                   request=inline_serializer("WalletUpdateBody", {"wallet": WalletUpdateInput()}),
                   responses={200: envelope("wallet", WALLET), **ERRORS})
    def put(self, request: Request, lago_id: str) -> Response:
        wallet = wallet_or_404(self.service, lago_id)
        payload = WalletUpdateInput(data=require_root(request, "wallet"))
        payload.is_valid(raise_exception=True)
        return Response(_render(services.update_wallet(wallet=wallet, data=payload.validated_data)))

    @extend_schema(operation_id="wallets_destroy", parameters=[WALLET_ID],
                   responses={200: envelope("wallet", WALLET), **ERRORS},
                   description="Lago's terminate: the wallet ends and the credits left are voided.")
    def delete(self, request: Request, lago_id: str) -> Response:
        return Response(_render(services.terminate_wallet(wallet=wallet_or_404(self.service, lago_id))))


class WalletTransactionCreateView(ServiceAPIView):
    @extend_schema(operation_id="wallet_transactions_create",
                   request=inline_serializer("WalletTransactionBody", {"wallet_transaction": WalletTransactionInput()}),
                   responses={200: obj({"wallet_transactions": array(WALLET_TRANSACTION)}), **ERRORS})
    def post(self, request: Request) -> Response:
        payload = WalletTransactionInput(data=require_root(request, "wallet_transaction"))
        payload.is_valid(raise_exception=True)
        wallet = wallet_or_404(self.service, payload.validated_data["wallet_id"])
        made = services.create_transactions(wallet=wallet, data=payload.validated_data)
        return Response({"wallet_transactions": [render_transaction(tx) for tx in made]})


class WalletTransactionListView(ServiceAPIView):
    @documented(operation_id="wallet_transactions_list", parameters=[WALLET_ID], query=(*TX_FILTERS, *PAGINATION),
                responses={200: page("wallet_transactions", WALLET_TRANSACTION), 401: LAGO_OBJECT, 404: LAGO_OBJECT, 422: LAGO_OBJECT})
    def get(self, request: Request, lago_id: str) -> Response:
        wallet = wallet_or_404(self.service, lago_id)
        query = self.query(request)
        filters = {}
        for param in TX_FILTERS:
            value = query.get(param.name)
            if value is not None and value != "":
                if param.enum is not None and value not in param.enum:
                    raise ValidationFailed({param.name: [ErrorCode.VALUE_IS_INVALID]})
                filters[param.name] = value
        items, meta = paginate(query, selectors.transactions_of(wallet=wallet, **filters))
        return Response({"wallet_transactions": [render_transaction(tx) for tx in items], "meta": meta})


class WalletMetadataView(ServiceAPIView):
    @extend_schema(operation_id="wallet_metadata_replace", parameters=[WALLET_ID], request=_METADATA_BODY,
                   responses={200: WALLET_METADATA, **ERRORS})
    def post(self, request: Request, lago_id: str) -> Response:
        wallet = wallet_or_404(self.service, lago_id)
        return Response({"metadata": services.replace_wallet_metadata(
            wallet=wallet, metadata=require_root(request, "metadata"))})

    @extend_schema(operation_id="wallet_metadata_merge", parameters=[WALLET_ID], request=_METADATA_BODY,
                   responses={200: WALLET_METADATA, **ERRORS})
    def patch(self, request: Request, lago_id: str) -> Response:
        wallet = wallet_or_404(self.service, lago_id)
        return Response({"metadata": services.merge_wallet_metadata(
            wallet=wallet, metadata=require_root(request, "metadata"))})

    @extend_schema(operation_id="wallet_metadata_destroy", parameters=[WALLET_ID],
                   responses={200: WALLET_METADATA, **ERRORS})
    def delete(self, request: Request, lago_id: str) -> Response:
        wallet = wallet_or_404(self.service, lago_id)
        return Response({"metadata": services.replace_wallet_metadata(wallet=wallet, metadata=None)})


class WalletMetadataKeyView(ServiceAPIView):
    @extend_schema(operation_id="wallet_metadata_key_destroy", parameters=[WALLET_ID, METADATA_KEY],
                   responses={200: WALLET_METADATA, **ERRORS})
    def delete(self, request: Request, lago_id: str, key: str) -> Response:
        wallet = wallet_or_404(self.service, lago_id)
        return Response({"metadata": services.delete_wallet_metadata_key(wallet=wallet, key=key)})
