from django.urls import path

from . import views
from .schema import VaultSchemaView

urlpatterns = [
    path("me/", views.MeView.as_view(), name="me"),
    path("payment-methods/", views.PaymentMethodListView.as_view(), name="payment-methods"),
    path("payment-methods/<str:uid>/", views.PaymentMethodDetailView.as_view(), name="payment-method"),
    path("default-payment-method/", views.DefaultPaymentMethodView.as_view(), name="default-payment-method"),
    path("addresses/", views.AddressListView.as_view(), name="addresses"),
    path("addresses/<str:uid>/", views.AddressDetailView.as_view(), name="address"),
    path("schema/", VaultSchemaView.as_view(), name="schema"),
]
