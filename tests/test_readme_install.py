"""The package as a newcomer gets it: the built sdist and wheel, and the README followed literally.

``make test-install`` (and ``.ci/run``) runs this module; ``make test`` skips it (it builds the
distributions and installs the wheel with its dependencies into a fresh virtualenv).

* the sdist carries LICENSE and the test suite with its support files; the wheel carries every
  file of the app that git tracks (templates, static files, both migration sets, py.typed) and
  no tests;
* ``test_readme_install_section_literally``: a new ``django-admin startproject mysite``, a
  NON-editable install of the built wheel, then every README block tagged
  ``<!-- readme-install: … -->`` in order: settings appended to ``settings.py``, files written,
  commands run — up to ``check --deploy`` with the documented production settings, ``migrate``,
  a signed webhook processed by a real Celery worker on a real Redis, and a checkout page that
  uses the README's template snippet.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import shutil
import socket
import sqlite3
import subprocess
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"

pytestmark = [
    pytest.mark.readme,
    pytest.mark.skipif(os.environ.get("VAULT_INSTALL_TESTS") != "1",
                       reason="builds and installs the package: make test-install"),
]

BLOCK = re.compile(r"<!-- readme-install: (?P<tag>\S+) -->\n```(?P<lang>\w*)\n(?P<code>.*?)\n```", re.S)


def readme_blocks() -> list[tuple[str, str]]:
    """``[(tag, code)]`` of the README's install blocks, in reading order."""
    return [(m["tag"], m["code"]) for m in BLOCK.finditer(README.read_text(encoding="utf-8"))]


def git_files(folder: str) -> set[str]:
    out = subprocess.run(["git", "ls-files", folder], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    return {line for line in out.splitlines() if line and (ROOT / line).exists()}


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> dict[str, Path]:
    """``python -m build``: the sdist, then the wheel built from that sdist (so it proves the sdist)."""
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)], check=True,
                   capture_output=True, timeout=300)
    (sdist,), (wheel,) = out.glob("*.tar.gz"), out.glob("*.whl")
    return {"sdist": sdist, "wheel": wheel}


PROCESSOR_MODULES = ("sandbox", "caselle", "cybersource", "exact", "paysimple", "processout")


def test_wheel_carries_the_whole_app_and_no_tests(dist):
    names = set(zipfile.ZipFile(dist["wheel"]).namelist())
    expected = {f for f in git_files("vault_wallets") if not f.endswith(".pyc")}
    assert expected - names == set()
    for needed in ("vault_wallets/py.typed", "vault_wallets/static/vault_wallets/wallet.js",
                   "vault_wallets/static/vault_wallets/wallet.css", "vault_wallets/static/vault_wallets/admin.css",
                   *(f"vault_wallets/static/vault_wallets/adapters/{name}.js" for name in PROCESSOR_MODULES),
                   *(f"vault_wallets/testing/fakes/standins/{name}.js" for name in PROCESSOR_MODULES[1:]),
                   "vault_wallets/templates/vault_wallets/saved_methods.html",
                   "vault_wallets/templates/vault_wallets/add_card/sandbox.html",
                   "vault_wallets/templates/admin/vault_wallets/delete_confirmation.html",
                   "vault_wallets/migrations/0001_initial.py", "vault_wallets/migrations/0003_operations.py",
                   "vault_wallets/migrations/0004_security.py", "vault_wallets/migrations/0005_reliability.py",
                   "vault_wallets/sandbox/migrations/0001_initial.py"):
        assert needed in names
    assert not any(n.startswith(("tests/", "example_project/", "bench/")) for n in names)
    license_files = [n for n in names if n.endswith("LICENSE")]
    assert license_files and b"MIT License" in zipfile.ZipFile(dist["wheel"]).read(license_files[0])


def test_sdist_carries_license_and_the_tests_with_their_support_files(dist):
    with tarfile.open(dist["sdist"]) as sdist:
        top = sdist.getnames()[0].split("/")[0]
        names = {n.removeprefix(top + "/") for n in sdist.getnames()}
    for folder in ("vault_wallets", "tests", "docs"):
        assert git_files(folder) - names == set(), folder
    assert {"LICENSE", "README.md", "CHANGELOG.md", "CONTRIBUTING.md", "pyproject.toml", "noxfile.py",
            "mkdocs.yml"} <= names


def test_metadata_declares_every_tested_version(dist):
    with zipfile.ZipFile(dist["wheel"]) as wheel:
        metadata = wheel.read(next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    tree = ast.parse((ROOT / "noxfile.py").read_text())
    DJANGO_PYTHONS = next(ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)
                          and getattr(node.targets[0], "id", "") == "DJANGO_PYTHONS")  # noqa: N806
    for django, pythons in DJANGO_PYTHONS.items():
        assert f"Classifier: Framework :: Django :: {django}" in metadata
        for python in pythons:
            assert f"Classifier: Programming Language :: Python :: {python}" in metadata
    import vault_wallets

    assert f"Version: {vault_wallets.__version__}" in metadata
    assert "License-Expression: MIT" in metadata


# -- the README, literally ---------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(condition, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


class Project:
    """A new startproject in ``path``, run with the virtualenv's python and a clean environment."""

    def __init__(self, path: Path, venv: Path, env: dict[str, str]):
        self.path, self.venv, self.env = path, venv, env
        self.processes: list[tuple[subprocess.Popen, Path]] = []

    def run(self, *args: str, timeout: float = 180) -> str:
        done = subprocess.run(list(args), cwd=self.path, env=self.env, capture_output=True, text=True,
                              timeout=timeout)
        assert done.returncode == 0, f"{shlex.join(args)} failed:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def manage(self, *args: str, timeout: float = 180) -> str:
        return self.run(str(self.venv / "bin" / "python"), "manage.py", *args, timeout=timeout)

    def start(self, args: list[str], log_name: str) -> subprocess.Popen:
        log = self.path / log_name
        process = subprocess.Popen(args, cwd=self.path, env=self.env, stdout=log.open("w"),
                                   stderr=subprocess.STDOUT, start_new_session=True)
        self.processes.append((process, log))
        return process

    def stop_all(self):
        for process, _ in reversed(self.processes):
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(15)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(5)

    def logs(self) -> str:
        return "\n".join(f"--- {log.name}\n{log.read_text()[-3000:]}" for _, log in self.processes)


def command(line: str) -> list[str]:
    """A README shell line without its comment, with ``python``/``celery`` from the virtualenv."""
    return shlex.split(line.split("#", 1)[0])


SHOP_VIEWS = '''
from django.contrib.auth.decorators import login_required
from django.shortcuts import render


@login_required
def checkout(request):
    return render(request, "shop/checkout.html")
'''

SHOP_SETUP = '''
from django.contrib.auth import get_user_model
from vault_wallets import services
from vault_wallets.processors import get_processor

user = get_user_model().objects.create_user("shopper", password="shopper-pass", is_staff=True)
customer = services.get_or_create_customer(user)
sandbox = get_processor("default")
saved, _ = services.add_payment_method(customer, sandbox.tokenize_card("4242424242424242", 12, 2034, "123", "Alex"))
method_id = saved.processor_ref.method_id
sandbox.network_update(method_id, exp_month=9, exp_year=2031)
headers, body = sandbox.make_webhook("provider.noc", {"payment_method_ids": [method_id]})
print(json.dumps({"uid": saved.uid, "method_id": method_id, "headers": headers, "body": body.decode()}))
'''


@pytest.mark.timeout(900)
def test_readme_install_section_literally(dist, tmp_path):
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is needed (apt-get install redis-server); .ci/run installs it")
    blocks = readme_blocks()
    tags = [tag for tag, _ in blocks]
    assert tags.count("settings") >= 3 and {"keys", "mysite/celery.py", "mysite/__init__.py", "mysite/urls.py",
                                            "run", "checkout.html"} <= set(tags), tags

    # A fresh virtualenv with the built wheel (not editable) and its dependencies.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    installed = subprocess.run([python, "-m", "pip", "install", "--quiet", f"{dist['wheel']}[redis]"],
                               capture_output=True, text=True, timeout=600)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    env = {k: v for k, v in os.environ.items()
           if k not in {"DJANGO_SETTINGS_MODULE", "DATABASE_URL", "PYTHONPATH", "VIRTUAL_ENV", "CELERY_BROKER_URL",
                        "VAULT_SITE_URL"}}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env['PATH']}"
    redis_port, web_port = free_port(), free_port()
    env.update(DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost", CELERY_BROKER_URL=f"redis://127.0.0.1:{redis_port}/0")

    subprocess.run([str(venv / "bin" / "django-admin"), "startproject", "mysite"], cwd=tmp_path, check=True,
                   env=env, timeout=60)
    project = Project(tmp_path / "mysite", venv, env)
    where = project.run(python, "-c", "import vault_wallets, django; print(vault_wallets.__file__, django.__version__)")
    assert str(venv) in where and str(ROOT) not in where, where  # the installed wheel, not this checkout
    env["DJANGO_SECRET_KEY"] = project.run(
        python, "-c", "from django.core.management.utils import get_random_secret_key; print(get_random_secret_key())"
    ).strip()

    settings_py = project.path / "mysite" / "settings.py"
    run_block = checkout_html = ""
    for tag, code in blocks:
        if tag == "settings":
            settings_py.write_text(settings_py.read_text() + "\n\n" + code + "\n")
        elif tag == "keys":
            for line in code.splitlines():
                output = project.run(*command(line))
                for pair in output.split():
                    name, _, value = pair.partition("=")
                    env[name] = value
            assert env["FERNET_KEY"] and env["VAULT_WEBHOOK_SECRET"].startswith("whsec_")
        elif tag == "mysite/urls.py":
            urls = project.path / "mysite" / "urls.py"
            urls.write_text(urls.read_text() + "\n\n" + code + "\n")
        elif tag.startswith("mysite/"):
            (project.path / tag).write_text(code + "\n")
        elif tag == "run":
            run_block = code
        elif tag == "checkout.html":
            checkout_html = code
        else:
            pytest.fail(f"unknown README block tag {tag!r}")

    # The shop's own code (not the README's business): a checkout view rendering the README's snippet.
    project.manage("startapp", "shop")
    (project.path / "shop" / "templates" / "shop").mkdir(parents=True)
    (project.path / "shop" / "templates" / "shop" / "checkout.html").write_text(checkout_html + "\n")
    (project.path / "shop" / "views.py").write_text(SHOP_VIEWS)
    settings_py.write_text(settings_py.read_text() + '\nINSTALLED_APPS += ["shop"]\n')
    urls = project.path / "mysite" / "urls.py"
    urls.write_text(urls.read_text() + "\nimport shop.views\n\n"
                    'urlpatterns += [path("checkout/", shop.views.checkout)]\n')

    # With the documented production settings the deploy checks find exactly one thing: the README's
    # account is the sandbox, which check --deploy flags on purpose (W004, README step 9).
    deploy = subprocess.run([str(project.venv / "bin" / "python"), "manage.py", "check", "--deploy"],
                            cwd=project.path, env=project.env, capture_output=True, text=True, timeout=180)
    deploy_output = deploy.stdout + deploy.stderr
    assert deploy.returncode == 0, deploy_output
    assert re.findall(r"\(([a-z_]+\.[CEW]\d+)\)", deploy_output) == ["vault_wallets.W004"], deploy_output
    assert "identified 1 issue" in deploy_output, deploy_output

    lines = [line for line in run_block.splitlines() if line.strip()]
    manage_lines = [command(line) for line in lines if line.startswith("python manage.py")]
    worker_line = next(command(line) for line in lines if " worker" in line)
    assert [args[2] for args in manage_lines] == ["migrate", "check"]
    for args in manage_lines:
        project.run(python, *args[1:])

    project.start(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                           "--appendonly", "no"], "redis.log")
    try:
        wait_for(lambda: _redis_up(redis_port), 20, "redis-server")
        project.start([python, "manage.py", "runserver", "--noreload", f"127.0.0.1:{web_port}"], "web.log")
        base = f"http://127.0.0.1:{web_port}"
        proxy = {"X-Forwarded-Proto": "https"}  # the test plays the TLS-terminating proxy of the production settings
        wait_for(lambda: _answers(base + "/admin/login/", proxy), 60, "runserver")

        # A shopper saved a card; the card network changed it; the sandbox signs the notification.
        shell_output = project.run(python, "manage.py", "shell", "-c", "import json\n" + SHOP_SETUP)
        made = json.loads(shell_output.strip().splitlines()[-1])  # Django 5.2+ may announce its auto-imports first
        response = requests.post(base + "/wallet/webhooks/default/", data=made["body"].encode(),
                                 headers={**made["headers"], **proxy}, timeout=30)
        assert response.status_code == 200, response.text
        database = project.path / "db.sqlite3"
        time.sleep(2)
        assert _event_statuses(database) == ["received"]  # no worker yet: nothing processed it

        assert worker_line[:3] == ["celery", "-A", "mysite"] and "worker" in worker_line
        project.start([str(venv / "bin" / worker_line[0]), *worker_line[1:], "--concurrency", "1"], "worker.log")
        wait_for(lambda: _event_statuses(database) == ["processed"], 90, "the worker to process the webhook")
        assert "process_webhook_event" in (project.path / "worker.log").read_text()

        # The checkout page, logged in through the admin's login form, shows the updated card.
        cookies: dict[str, str] = {}
        login = requests.get(base + "/admin/login/", headers=proxy, timeout=30)
        cookies.update(login.cookies.get_dict())
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.text)[1]
        logged_in = requests.post(base + "/admin/login/?next=/checkout/", cookies=cookies, allow_redirects=False,
                                  data={"username": "shopper", "password": "shopper-pass",
                                        "csrfmiddlewaretoken": token, "next": "/checkout/"},
                                  headers={**proxy, "Referer": f"https://127.0.0.1:{web_port}/admin/login/"},
                                  timeout=30)
        assert logged_in.status_code == 302, logged_in.text[:2000]
        cookies.update(logged_in.cookies.get_dict())
        page = requests.get(base + "/checkout/", cookies=cookies, headers=proxy, timeout=30, allow_redirects=False)
        assert page.status_code == 200, page.text[:2000]
        # {% vault_saved_methods %}: the card's accessible name, and the expiry the worker applied (was 12/2034).
        assert "Visa ending 4242" in page.text and "Expires 09/2031" in page.text
        assert "12/2034" not in page.text
        assert f'name="saved_payment_method" value="{made["uid"]}"' in page.text  # the tag's radio group
        assert "vault_wallets/wallet.js" in page.text and "vault_wallets/adapters/sandbox.js" in page.text
        assert 'id="vault-wallet-config"' in page.text  # {% vault_wallet_script %}'s configuration
        assert made["method_id"] not in page.text  # the processor's token never reaches the page
    except BaseException:
        print(project.logs())
        raise
    finally:
        project.stop_all()


def _redis_up(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def _answers(url: str, headers: dict) -> bool:
    try:
        return requests.get(url, headers=headers, timeout=5).status_code == 200
    except requests.RequestException:
        return False


def _event_statuses(database: Path) -> list[str]:
    with sqlite3.connect(database) as connection:
        return [row[0] for row in connection.execute("SELECT status FROM vault_wallets_webhookevent")]
