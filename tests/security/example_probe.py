"""Run inside the example shop (``DJANGO_SETTINGS_MODULE=shop.settings``, a scratch SQLite): probe
its pages as a logged-in shopper and print what the security tests assert, as JSON."""

import json

import django

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.test import Client  # noqa: E402

call_command("migrate", verbosity=0, interactive=False)
user = get_user_model().objects.create_user("probe", password="probe-pass")
client = Client(raise_request_exception=False, HTTP_HOST="localhost")
client.force_login(user)
results = {}
for name, path in {"order_nul": "/orders/%00/", "order_long": "/orders/" + "x" * 5000 + "/",
                   "checkout": "/checkout/", "home": "/"}.items():
    response = client.get(path)
    results[name] = {"status": response.status_code, "csp": response.get("Content-Security-Policy", ""),
                     "nonce": getattr(response.wsgi_request, "csp_nonce", ""),
                     "body": response.content.decode("utf-8", "replace") if name == "checkout" else ""}
print(json.dumps(results))
