from django.urls import include, path
from shop.urls import urlpatterns as shop_urlpatterns

from . import views

urlpatterns = [
    path("bench/baseline/payment-methods/", views.payment_methods),
    path("bench/baseline/customer-token/", views.BareTokenView.as_view()),
    path("bench/baseline/webhook/", views.webhook),
    path("", include(shop_urlpatterns)),
]
