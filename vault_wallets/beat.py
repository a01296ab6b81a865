"""The periodic tasks vault_wallets needs (importable from settings: no Django models here).

    from vault_wallets.beat import BEAT_SCHEDULE
    CELERY_BEAT_SCHEDULE = {**BEAT_SCHEDULE, **your_schedule}
"""

BEAT_SCHEDULE = {
    # Re-enqueue webhook events left unprocessed: broker down at receipt, worker killed, retry lost.
    "vault-wallets-sweep-webhook-events": {
        "task": "vault_wallets.tasks.sweep_webhook_events",
        "schedule": 10.0,  # cheap (one indexed query); recovery follows the outage, not a fixed delay
    },
    # Look up charges and refunds whose processor answer was lost.
    "vault-wallets-sweep-money": {
        "task": "vault_wallets.tasks.sweep_money",
        "schedule": 30.0,
    },
}
