from django.urls import path

from . import views

urlpatterns = [
    path("wallets", views.WalletListView.as_view(), name="wallets"),
    path("wallets/<str:lago_id>", views.WalletDetailView.as_view(), name="wallet"),
    path("wallets/<str:lago_id>/metadata", views.WalletMetadataView.as_view(), name="wallet-metadata"),
    path("wallets/<str:lago_id>/metadata/<str:key>", views.WalletMetadataKeyView.as_view(),
         name="wallet-metadata-key"),
    path("wallets/<str:lago_id>/wallet_transactions", views.WalletTransactionListView.as_view(),
         name="wallet-transactions"),
    path("customers/<str:external_id>/wallets", views.CustomerWalletListView.as_view(), name="customer-wallets"),
    path("wallet_transactions", views.WalletTransactionCreateView.as_view(), name="wallet-transactions-create"),
]
