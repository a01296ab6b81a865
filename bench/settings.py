"""Settings for the benchmarks: the test settings, with a bench URLconf (a bare baseline view)."""

from tests.settings import *  # noqa: F401,F403

ROOT_URLCONF = "bench.urls"
DEBUG = False
LOGGING = {"version": 1, "disable_existing_loggers": False, "loggers": {"vault_wallets": {"level": "WARNING"}}}
