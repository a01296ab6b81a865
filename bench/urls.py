from django.http import JsonResponse
from django.urls import include, path


def baseline(request):
    """The bare baseline: a Django view that reads the session user and answers JSON."""
    return JsonResponse({"user": request.user.pk, "results": []})


urlpatterns = [
    path("baseline/", baseline),
    path("wallet/", include("vault_wallets.urls")),
]
