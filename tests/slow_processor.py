"""A sandbox processor that can be made to stall mid-task, so a test can SIGKILL the worker then.

While the file named by ``VAULT_TEST_STALL_FILE`` exists, ``fetch_payment_method`` writes
``<file>.started`` and waits (up to 60 s) for the file to disappear.
"""

import os
import time
from pathlib import Path

from vault_wallets.processors.sandbox import SandboxProcessor


class StallingSandboxProcessor(SandboxProcessor):
    def fetch_payment_method(self, customer, method):
        stall = os.environ.get("VAULT_TEST_STALL_FILE")
        if stall and Path(stall).exists():
            Path(stall + ".started").write_text(str(os.getpid()))
            deadline = time.monotonic() + 60
            while Path(stall).exists() and time.monotonic() < deadline:
                time.sleep(0.1)
        return super().fetch_payment_method(customer, method)
