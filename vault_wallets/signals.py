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
