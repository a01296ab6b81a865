"""The periodic tasks vault_wallets needs (importable from settings: no Django models here).

    from vault_wallets.beat import BEAT_SCHEDULE
    CELERY_BEAT_SCHEDULE = {**BEAT_SCHEDULE, **your_schedule}
"""

BEAT_SCHEDULE = {
    # Re-enqueue webhook events left unprocessed: broker down at receipt, worker killed, retry lost.
    "vault-wallets-sweep-webhook-events": {
        "task": "vault_wallets.tasks.sweep_webhook_events",
        "schedule": 60.0,
    },
}
