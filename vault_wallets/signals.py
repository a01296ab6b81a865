"""Signals a shop can listen to.  Each sends ``sender`` (the model class) and the object."""

from django.dispatch import Signal

#: ``payment_method`` was vaulted and saved.
payment_method_added = Signal()
#: ``payment_method`` was removed by the shopper or the shop.
payment_method_removed = Signal()
#: ``payment_method`` changed (notification of change, verification); sends ``changes``.
payment_method_updated = Signal()
#: ``charge`` was created or changed state.
charge_updated = Signal()
#: A processor event was processed: sends ``event`` (a ``vault_wallets.services.events.VaultEvent``).
vault_event = Signal()
#: Processing a stored webhook event failed for good: sends ``webhook_event`` and ``error``.
webhook_processing_failed = Signal()
#: ``payment_method`` expires within ``window_days`` (sent once per method, expiry and window);
#: also sends ``expires_on`` (the last valid day) and ``days_left``.
payment_method_expiring = Signal()
#: ``erasure`` (an ``ErasureRequest``) finished: the customer is gone at the processor and here.
customer_erased = Signal()
