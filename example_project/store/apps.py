from django.apps import AppConfig


class StoreConfig(AppConfig):
    name = "store"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from . import views  # noqa: F401  (connects the order-follows-its-charge receiver)
