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
    # Retry erasures left pending by a processor outage (each also schedules its own retry).
    "vault-wallets-sweep-erasures": {
        "task": "vault_wallets.tasks.sweep_erasures",
        "schedule": 300.0,
    },
    # Expired saved methods become "expired"; payment_method_expiring is sent once per window.
    "vault-wallets-expiring-payment-methods": {
        "task": "vault_wallets.tasks.check_expiring_payment_methods",
        "schedule": 6 * 3600.0,
    },
}
