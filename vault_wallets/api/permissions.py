from rest_framework.permissions import BasePermission

from .authentication import CustomerTokenAuth


class IsShopper(BasePermission):
    """A verified customer token, or a logged-in user (session, CSRF enforced by DRF)."""

    def has_permission(self, request, view):
        if isinstance(request.auth, CustomerTokenAuth):
            return True
        user = getattr(request, "user", None)
        return bool(user and user.is_authenticated)
