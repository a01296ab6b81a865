"""The example shop's secrets: generated on first run, kept in an untracked local file.

Nothing secret is committed: ``SECRET_KEY`` (which also keys customer tokens), the Fernet key
that encrypts processor tokens and webhook bodies, and the sandbox webhook secret are created
at random the first time the shop starts (``make demo`` runs ``python -m shop.local_secrets``
first) and written to ``example_project/local_secrets.json`` (git-ignored, mode 0600), or to the
file named by ``VAULT_EXAMPLE_SECRETS``.  Environment variables (``SECRET_KEY``, ``FERNET_KEY``,
``VAULT_WEBHOOK_SECRET``) take precedence over the file.

Deleting the file makes new secrets — and makes data encrypted under the old key unreadable:
delete ``db.sqlite3`` with it (``make clean``).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import sys
from pathlib import Path

DEFAULT_PATH = Path(__file__).resolve().parent.parent / "local_secrets.json"
NAMES = ("SECRET_KEY", "FERNET_KEY", "WEBHOOK_SECRET")


def secrets_path() -> Path:
    return Path(os.environ.get("VAULT_EXAMPLE_SECRETS") or DEFAULT_PATH)


def generate() -> dict[str, str]:
    return {
        "SECRET_KEY": secrets.token_urlsafe(50),
        # A Fernet key is 32 random bytes, urlsafe-base64 (cryptography's Fernet.generate_key()).
        "FERNET_KEY": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode("ascii"),
        # Standard Webhooks secrets are "whsec_" + base64 of 24 to 64 random bytes.
        "WEBHOOK_SECRET": "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode("ascii"),
    }


def load_or_create(path: Path | None = None) -> tuple[dict[str, str], bool]:
    """``(secrets, created)``.  Creation is atomic: concurrent first runs agree on one file."""
    path = path or secrets_path()
    try:
        return _read(path), False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        json.dump(generate(), handle, indent=2)
        handle.write("\n")
    try:
        os.link(temporary, path)  # fails if another process created it first: theirs wins
        created = True
    except FileExistsError:
        created = False
    finally:
        os.unlink(temporary)
    return _read(path), created


def _read(path: Path) -> dict[str, str]:
    values = json.loads(path.read_text())
    missing = [name for name in NAMES if not isinstance(values.get(name), str) or not values[name]]
    if missing:
        raise RuntimeError(f"{path} lacks {', '.join(missing)}: delete it (and db.sqlite3) to start afresh")
    return values


def main() -> int:
    path = secrets_path()
    _values, created = load_or_create(path)
    if created:
        print(f"Generated new secrets in {path} (untracked; delete it together with db.sqlite3 to start afresh).")
        database = path.parent / "db.sqlite3"
        if database.exists():
            print(f"Note: {database} predates these secrets; its encrypted data cannot be read. "
                  "Run `make clean` and `make demo` again.", file=sys.stderr)
    else:
        print(f"Using the secrets in {path}.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
