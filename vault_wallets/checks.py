"""System checks: every configuration mistake has an id (``vault_wallets.E0xx``/``W0xx``)."""

from __future__ import annotations

from django.apps import apps
from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from . import conf


@checks.register("vault_wallets")
def check_settings(app_configs=None, **kwargs):
    errors: list[checks.CheckMessage] = []
    raw = getattr(settings, conf.SETTINGS_NAME, None)
    if raw is None:
        return [checks.Error("VAULT_WALLETS is not set.", hint="Name at least one account; see the settings docs.",
                             id="vault_wallets.E001")]
    if not isinstance(raw, dict):
        return [checks.Error("VAULT_WALLETS must be a dict.", id="vault_wallets.E002")]
    unknown = sorted(set(raw) - set(conf.DEFAULTS))
    if unknown:
        errors.append(checks.Error(f"VAULT_WALLETS has unknown keys: {', '.join(unknown)}.",
                                   hint=f"Known keys: {', '.join(sorted(conf.DEFAULTS))}.", id="vault_wallets.E003"))
    accounts = raw.get("ACCOUNTS") or {}
    if not isinstance(accounts, dict) or not accounts:
        errors.append(checks.Error("VAULT_WALLETS['ACCOUNTS'] must name at least one account.",
                                   id="vault_wallets.E004"))
        accounts = {}
    default = raw.get("DEFAULT_ACCOUNT", conf.DEFAULTS["DEFAULT_ACCOUNT"])
    if accounts and default not in accounts:
        errors.append(checks.Error(f"DEFAULT_ACCOUNT {default!r} is not one of ACCOUNTS.", id="vault_wallets.E005"))
    ttl = raw.get("CUSTOMER_TOKEN_TTL", conf.DEFAULTS["CUSTOMER_TOKEN_TTL"])
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not 30 <= ttl <= 86400:
        errors.append(checks.Error("CUSTOMER_TOKEN_TTL must be a whole number of seconds from 30 to 86400.",
                                   id="vault_wallets.E006"))
    for name, config in accounts.items():
        errors.extend(_check_account(name, config))
    if not getattr(settings, "FERNET_KEYS", None):
        errors.append(checks.Warning(
            "FERNET_KEYS is not set: processor tokens are encrypted with a key derived from SECRET_KEY.",
            hint="Set FERNET_KEYS (a list, newest first) so SECRET_KEY can rotate without losing the vault.",
            id="vault_wallets.W001"))
    return errors


def _check_account(name: str, config) -> list[checks.CheckMessage]:
    from .processors.base import BaseProcessor
    from .processors.sandbox import SandboxProcessor

    if not isinstance(config, dict) or not config.get("PROCESSOR"):
        return [checks.Error(f"Account {name!r} needs a PROCESSOR dotted path.", id="vault_wallets.E010")]
    try:
        klass = import_string(config["PROCESSOR"])
    except ImportError:
        return [checks.Error(f"Account {name!r}: cannot import PROCESSOR {config['PROCESSOR']!r}.",
                             id="vault_wallets.E011")]
    if not (isinstance(klass, type) and issubclass(klass, BaseProcessor)):
        return [checks.Error(f"Account {name!r}: {config['PROCESSOR']} is not a vault_wallets processor.",
                             id="vault_wallets.E012")]
    options = config.get("OPTIONS")
    options = {} if options is None else options
    if not isinstance(options, dict):
        return [checks.Error(f"Account {name!r}: OPTIONS must be a dict.", id="vault_wallets.E013")]
    errors: list[checks.CheckMessage] = []
    try:
        problems = klass(name, options).check_options()
    except (ImproperlyConfigured, TypeError, ValueError) as exc:
        problems = [str(exc)]
    for problem in problems:
        errors.append(checks.Error(f"Account {name!r}: {problem}.", id="vault_wallets.E014"))
    if issubclass(klass, SandboxProcessor) and not apps.is_installed("vault_wallets.sandbox"):
        errors.append(checks.Error(f"Account {name!r} uses the sandbox processor but 'vault_wallets.sandbox' is "
                                   "not in INSTALLED_APPS.", id="vault_wallets.E015"))
    return errors


@checks.register("vault_wallets")
def check_celery(app_configs=None, celery_app=None, **kwargs):
    """W020: accounts receive webhooks but Celery has neither a broker nor eager mode.

    Without either, ``shared_task`` publishes to Celery's default AMQP broker on localhost: the
    webhook answers 200 and the event stays ``received`` for ever.  ``celery_app`` is for tests;
    the check looks at the app the tasks would be sent with (``celery.current_app``).
    """
    raw = getattr(settings, conf.SETTINGS_NAME, None)
    accounts = raw.get("ACCOUNTS") if isinstance(raw, dict) else None
    if not isinstance(accounts, dict) or not any(_receives_webhooks(c) for c in accounts.values()):
        return []
    if celery_app is None:
        from celery import current_app as celery_app
    config = celery_app.conf
    broker = config.broker_write_url or config.broker_url or ""
    if config.task_always_eager or (broker and not str(broker).startswith("memory://")):
        return []
    return [checks.Warning(
        "Webhook events are processed by Celery tasks, but Celery has no broker (CELERY_BROKER_URL) and "
        "is not in eager mode (CELERY_TASK_ALWAYS_EAGER): webhooks would be answered and never processed.",
        hint="Create your project's Celery app (celery.py, loaded from your project's __init__.py) with "
             "config_from_object('django.conf:settings', namespace='CELERY'), set CELERY_BROKER_URL and run a "
             "worker and beat; or set CELERY_TASK_ALWAYS_EAGER = True to process in the request (development).",
        id="vault_wallets.W020")]


def _receives_webhooks(config) -> bool:
    from .processors.base import BaseProcessor

    if not isinstance(config, dict) or not config.get("PROCESSOR"):
        return False
    try:
        klass = import_string(config["PROCESSOR"])
    except ImportError:
        return False  # E011 reports it
    return isinstance(klass, type) and issubclass(klass, BaseProcessor) and \
        klass.verify_webhook is not BaseProcessor.verify_webhook
