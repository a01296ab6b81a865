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


#: Fragments of SECRET_KEY values published in docs, examples and generated projects.
KNOWN_KEY_FRAGMENTS = ("django-insecure", "change-me", "changeme", "change_me", "example", "secret-key",
                       "secret_key", "not-for-production", "insecure", "your-secret", "replace-me", "xxxxxxxx")
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "[::1]", "testserver"})


def weak_secret_reason(value) -> str | None:
    """Why ``value`` cannot key customer tokens (published, short or repetitive), or None."""
    if not isinstance(value, str) or not value:
        return "it is empty"
    lowered = value.lower()
    for fragment in KNOWN_KEY_FRAGMENTS:
        if fragment in lowered:
            return f"it contains {fragment!r}, as published example keys do"
    if len(value) < 50 or len(set(value)) < 5:
        return "it is shorter than 50 characters or has fewer than 5 distinct characters"
    return None


def _is_loopback(host: str) -> bool:
    host = host.strip().lower()
    return host in LOOPBACK_HOSTS or host.startswith("127.") or host.endswith(".localhost")


@checks.register("vault_wallets", checks.Tags.security)
def check_secrets(app_configs=None, **kwargs):
    """Keys and DEBUG: what would let a stranger forge a customer token or read a traceback."""
    errors: list[checks.CheckMessage] = []
    raw = getattr(settings, conf.SETTINGS_NAME, None)
    signing_key = raw.get("SIGNING_KEY") if isinstance(raw, dict) else None
    if not signing_key:
        reason = weak_secret_reason(getattr(settings, "SECRET_KEY", ""))
        if reason:
            errors.append(checks.Warning(
                f"Customer tokens and card fingerprints are keyed from SECRET_KEY, and SECRET_KEY is weak: {reason}.",
                hint="Anyone who knows the key can forge customer tokens. Generate one "
                     "(python -c 'import secrets; print(secrets.token_urlsafe(50))') and keep it out of the "
                     "repository, or set VAULT_WALLETS['SIGNING_KEY'].",
                id="vault_wallets.W002"))
    if settings.DEBUG:
        exposed = [h for h in getattr(settings, "ALLOWED_HOSTS", []) if not _is_loopback(str(h))]
        if exposed:
            errors.append(checks.Warning(
                f"DEBUG is on and ALLOWED_HOSTS admits {', '.join(map(repr, exposed))}: any visitor who makes a "
                "request fail sees the technical error page (settings, local variables).",
                hint="Serve DEBUG only on 127.0.0.1/localhost; turn it off anywhere reachable.",
                id="vault_wallets.W003"))
    fernet_keys = getattr(settings, "FERNET_KEYS", None)
    if fernet_keys is not None and not (isinstance(fernet_keys, (list, tuple))
                                        and all(isinstance(k, (str, bytes)) and k for k in fernet_keys)):
        errors.append(checks.Error(
            "FERNET_KEYS must be a list of keys (newest first); "
            + ("a string would be read one character at a time, each character a key."
               if isinstance(fernet_keys, (str, bytes)) else f"it is {type(fernet_keys).__name__}."),
            hint='FERNET_KEYS = [os.environ["FERNET_KEY"]]', id="vault_wallets.E016"))
    return errors


@checks.register("vault_wallets")
def check_throttles(app_configs=None, **kwargs):
    """``THROTTLE_RATES`` scopes and rates, and the cache they count in."""
    raw = getattr(settings, conf.SETTINGS_NAME, None)
    if not isinstance(raw, dict):
        return []
    errors: list[checks.CheckMessage] = []
    rates = raw.get("THROTTLE_RATES", {})
    if not isinstance(rates, dict):
        rates = {}
        errors.append(checks.Error("THROTTLE_RATES must be a dict of scope → rate.", id="vault_wallets.E017"))
    for scope, rate in rates.items():
        if scope not in conf.THROTTLE_RATES_DEFAULTS:
            errors.append(checks.Error(f"THROTTLE_RATES names an unknown scope {scope!r}.",
                                       hint=f"Scopes: {', '.join(sorted(conf.THROTTLE_RATES_DEFAULTS))}.",
                                       id="vault_wallets.E017"))
        elif rate is not None and not _valid_rate(rate):
            errors.append(checks.Error(f"THROTTLE_RATES[{scope!r}] = {rate!r} is not a rate.",
                                       hint='Use "<count>/<second|minute|hour|day>", or None to switch it off.',
                                       id="vault_wallets.E017"))
    cache = raw.get("THROTTLE_CACHE", conf.DEFAULTS["THROTTLE_CACHE"])
    if cache not in getattr(settings, "CACHES", {"default": {}}):
        errors.append(checks.Error(f"THROTTLE_CACHE {cache!r} is not one of CACHES.", id="vault_wallets.E018"))
    return errors


def _valid_rate(rate) -> bool:
    if not isinstance(rate, str) or rate.count("/") != 1:
        return False
    count, period = rate.split("/")
    return count.isdigit() and int(count) > 0 and period[:1] in ("s", "m", "h", "d")


@checks.register("vault_wallets", checks.Tags.security, deploy=True)
def check_deploy(app_configs=None, **kwargs):
    """``manage.py check --deploy``: nothing a test or a demo may do should reach production."""
    from .processors.sandbox import SandboxProcessor

    if settings.DEBUG:
        return []
    sandboxed = []
    try:
        configured = conf.accounts()
    except ImproperlyConfigured:
        return []  # check_settings reports it
    for name, config in configured.items():
        try:
            klass = import_string(config["PROCESSOR"]) if isinstance(config, dict) else None
        except (ImportError, KeyError):
            continue
        if isinstance(klass, type) and issubclass(klass, SandboxProcessor):
            sandboxed.append(name)
    if not sandboxed:
        return []
    return [checks.Warning(
        f"DEBUG is off but account(s) {', '.join(map(repr, sandboxed))} use the sandbox processor: anyone can "
        "save sandbox cards and the sandbox tokenizer is public.",
        hint="Point production accounts at a real processor; keep the sandbox for development and tests.",
        id="vault_wallets.W004")]


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
