from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.contrib.staticfiles.views import serve as serve_static
from django.urls import include, path, re_path
from store import views

urlpatterns = [
    path("", views.home, name="home"),
    path("cart/add/<slug:slug>/", views.add_to_cart, name="add-to-cart"),
    path("checkout/", views.checkout, name="checkout"),
    path("checkout/pay/", views.pay, name="pay"),
    path("orders/<slug:uid>/", views.order_detail, name="order"),  # slug: a NUL or a 10 kB id is a 404
    path("accounts/login/", auth_views.LoginView.as_view(template_name="store/login.html"), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("wallet/", include("vault_wallets.urls")),
    # The demo serves its own static files with DEBUG off too (runserver alone, no web server);
    # a real shop serves them from its web server or CDN.
    re_path(rf"^{settings.STATIC_URL.strip('/')}/(?P<path>.*)$", serve_static, {"insecure": True}),
]
