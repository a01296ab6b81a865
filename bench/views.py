"""The baselines: bare views doing the least work that answers the same request.

Each one runs behind the same middleware as the subject (sessions, CSRF, auth), so the ratio
measures what vault_wallets adds, not what Django costs.
"""

import json

from django.db import connection
from django.http import HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework.authentication import SessionAuthentication
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

_LIST_SQL = """
SELECT m.uid, m.method_type, m.brand, m.bank_name, m.last4, m.exp_month, m.exp_year, m.label,
       m.is_default, m.verification_status, m.status, m.created_at
FROM vault_wallets_savedpaymentmethod m
JOIN vault_wallets_customer c ON c.id = m.customer_id
WHERE c.user_id = %s AND c.account = %s AND m.status <> 'removed'
ORDER BY m.is_default DESC, m.created_at DESC, m.id DESC
"""


def payment_methods(request):
    """One join, JSON out: the least a list of saved methods can cost."""
    if not request.user.is_authenticated:
        return JsonResponse({"detail": "not authenticated"}, status=403)
    with connection.cursor() as cursor:
        cursor.execute(_LIST_SQL, [request.user.pk, "default"])
        rows = cursor.fetchall()
    results = [{"id": r[0], "type": r[1], "brand": r[2] or r[3], "last4": r[4], "exp_month": r[5],
                "exp_year": r[6], "label": r[7], "is_default": r[8], "verification_status": r[9],
                "status": r[10], "created_at": r[11].isoformat()} for r in rows]
    return HttpResponse(json.dumps({"results": results}), content_type="application/json")


class BareTokenView(APIView):
    """A bare DRF view with the subject's authentication (session + CSRF) and permission."""

    authentication_classes = [SessionAuthentication]
    permission_classes = [IsAuthenticated]

    def post(self, request, *args, **kwargs):
        return Response({"user": request.user.pk}, status=201)


@csrf_exempt
def webhook(request):
    """One INSERT of the raw body, then 200."""
    with connection.cursor() as cursor:
        cursor.execute("INSERT INTO bench_baselineevent (body) VALUES (%s)", [request.body.decode("utf-8")])
    return JsonResponse({"received": True})
