from django.db import models


class BaselineEvent(models.Model):
    """The webhook baseline's table: one row per request, nothing else."""

    body = models.TextField()

    class Meta:
        app_label = "bench"
