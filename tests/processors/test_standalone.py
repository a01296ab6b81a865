"""What runs outside pytest and Django: processor modules, the fakes, their standalone servers,
and the shared test-card helpers."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import requests

from vault_wallets.testing.cards import card_brand, luhn_ok

ROOT = Path(__file__).resolve().parents[2]
FAKES = ("caselle", "cybersource", "exact", "paysimple", "processout")
NO_PYTEST = "import sys; sys.modules['pytest'] = None  # importing pytest now raises ImportError\n"


def _take_ctrl_c() -> None:
    # A background job of a non-interactive shell (CI runs the nox matrix as `setsid nox … &`) starts
    # with SIGINT ignored, and an ignored signal is inherited across exec: Python then never installs
    # its KeyboardInterrupt handler and the fake would ignore Ctrl-C. A terminal gives the default.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def python(code: str, *args: str, **kwargs) -> subprocess.Popen:
    kwargs.setdefault("preexec_fn", _take_ctrl_c)
    return subprocess.Popen(
        [sys.executable, "-u", "-c", code, *args], cwd=ROOT, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs,
    )


def test_processors_and_fakes_import_without_django_or_pytest():
    code = NO_PYTEST + textwrap.dedent(f"""
        import importlib
        for name in {FAKES!r}:
            importlib.import_module("vault_wallets.processors." + name)
            importlib.import_module("vault_wallets.testing.fakes." + name)
        import vault_wallets.processors.money, vault_wallets.testing.server, vault_wallets.testing.cards
        assert not [m for m in sys.modules if m == "django" or m.startswith("django.")], "django was imported"
        from vault_wallets.testing.fakes.paysimple import paysimple_fake
        try:
            paysimple_fake()
        except RuntimeError as exc:
            print(exc)
    """)
    process = python(code)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "paysimple_fake is a pytest fixture" in out


def test_get_processor_is_still_importable_from_the_package():
    from vault_wallets.processors import get_processor, processor_for_customer, registry

    assert get_processor is registry.get_processor and processor_for_customer is registry.processor_for_customer
    with pytest.raises(AttributeError):
        import vault_wallets.processors as package

        package.no_such_name  # noqa: B018


@pytest.mark.parametrize("fake", FAKES)
def test_standalone_server_serves_until_ctrl_c(fake):
    code = NO_PYTEST + f"import runpy; runpy.run_module('vault_wallets.testing.fakes.{fake}', run_name='__main__')"
    process = python(code, "--host", "127.0.0.1", "--port", "0")
    try:
        lines = []
        for line in process.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith("Ctrl-C stops."):
                break
        match = re.match(r"^Fake .+ at (http://127\.0\.0\.1:\d+)$", lines[0] if lines else "")
        assert match, (lines, process.stderr.read() if process.poll() is not None else "")
        assert len(lines) > 2  # the credentials the fake describes
        preflight = requests.options(f"{match.group(1)}/_fake/tokens", timeout=5)
        assert preflight.status_code == 204
    finally:
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "Traceback" not in err


@pytest.mark.parametrize(("number", "brand"), [
    ("4242424242424242", "visa"),
    ("5555555555554444", "mastercard"),
    ("2223000148400010", "mastercard"),
    ("378282246310005", "amex"),
    ("6011111111111117", "discover"),
    ("6445644564456445", "discover"),
    ("6500000000000002", "discover"),
    ("36227206271667", "diners"),
    ("30569309025904", "diners"),
    ("3530111333300000", "jcb"),
    ("9999999999999995", "unknown"),
    ("12", "unknown"),
])
def test_card_brand(number, brand):
    assert card_brand(number) == brand


def test_luhn_ok_is_the_sandbox_check():
    assert luhn_ok("4242424242424242") and not luhn_ok("4242424242424241")
