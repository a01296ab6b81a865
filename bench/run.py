"""``make bench``: vault_wallets on the real stack, as ratios to bare baselines in the same run.

    python bench/run.py            # the full run: writes bench/results.json and docs/benchmarks.md
    python bench/run.py --smoke    # seconds long, for CI: every scenario once, nothing written

It starts everything itself: PostgreSQL (if it is not running), its own Redis on a free port,
the Caselle fake with injected latency (``bench/fake.py``), the example project under gunicorn
(2 sync workers, persistent database connections) and, for the NOC scenario, a real Celery
worker with default settings.  wrk drives the load from its own process on loopback.  Subject
and baseline alternate (A B A B …); each figure is the median of its runs and each ratio the
median of the per-pair ratios, so a machine shared with other work moves both sides alike.
Exit status 1 when a target is missed (full run) or when anything fails.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
EXAMPLE = ROOT / "example_project"
PY = sys.executable
GUNICORN_WORKERS = 2
WRK_CONNECTIONS = 4
DOC_START, DOC_END = "<!-- bench:results:start -->", "<!-- bench:results:end -->"


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(check, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:  # noqa: BLE001,S110 - not up yet
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not come up within {timeout:.0f} s")


class Processes:
    """The child processes this run started; stopped (by pid) whatever happens."""

    def __init__(self, workdir: Path):
        self.workdir = workdir
        self.children: dict[str, subprocess.Popen] = {}

    def start(self, name: str, cmd: list[str], **kwargs) -> subprocess.Popen:
        out = open(self.workdir / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(cmd, stdout=kwargs.pop("stdout", out), stderr=out, start_new_session=True, **kwargs)
        self.children[name] = proc
        return proc

    def stop(self, name: str) -> None:
        proc = self.children.pop(name, None)
        if proc is None or proc.poll() is not None:
            return
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.workdir / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    def stop_all(self) -> None:
        for name in list(self.children)[::-1]:
            self.stop(name)


# -- services ------------------------------------------------------------------------------------


def ensure_postgres() -> None:
    def ready() -> bool:
        return subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1", "-p", "5432"]).returncode == 0

    if ready():
        return
    log("starting PostgreSQL")
    versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
    if versions:
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", versions[0], "main", "start"])
    wait_for(ready, "PostgreSQL", 30)


def recreate_database(name: str) -> None:
    import psycopg2

    conn = psycopg2.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres")
    conn.autocommit = True
    with conn.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        cursor.execute(f'CREATE DATABASE "{name}"')
    conn.close()


def tool_versions() -> dict[str, str]:
    def first_line(cmd: list[str]) -> str:
        try:
            result = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return "?"
        line = ((result.stdout or result.stderr).strip().splitlines() or ["?"])[0]
        version = re.search(r"\d+\.\d+(\.\d+)?", line)
        return version.group(0) if version else line

    import celery
    import django
    import rest_framework

    return {
        "python": platform.python_version(), "django": django.get_version(),
        "djangorestframework": rest_framework.VERSION, "celery": celery.__version__,
        "gunicorn": first_line([PY, "-m", "gunicorn", "--version"]),
        "postgresql": first_line(["psql", "-h", "127.0.0.1", "-U", "postgres", "-Atc", "SHOW server_version"]),
        "redis": first_line(["redis-server", "--version"]),
        "wrk": first_line(["wrk", "--version"]),
    }


def machine() -> str:
    cpu = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kib / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return f"{os.cpu_count()} CPU ({cpu}){mem}, {platform.system()} {platform.release()}"


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of a process and its live descendants, in seconds."""
    tick = os.sysconf("SC_CLK_TCK")
    total, todo = 0.0, [pid]
    while todo:
        current = todo.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, ValueError, IndexError):
            continue
    return total


# -- load ------------------------------------------------------------------------------------------


def wrk(url: str, seconds: float, *, headers: list[str] = (), script: str | None = None,
        script_args: list[str] = ()) -> dict:
    cmd = ["wrk", "-t1", f"-c{WRK_CONNECTIONS}", f"-d{max(1, round(seconds))}s", "--timeout", "10s"]
    for header in headers:
        cmd += ["-H", header]
    if script:
        cmd += ["-s", str(BENCH / "wrk" / script)]
    cmd.append(url)
    if script_args:
        cmd += ["--", *script_args]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    out = result.stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    total = re.search(r"(\d+) requests in", out)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if result.returncode or not rate or not total:
        raise RuntimeError(f"wrk failed ({result.returncode}): {out} {result.stderr}")
    errors = int(bad.group(1)) if bad else 0
    if sock:
        errors += sum(int(g) for g in sock.groups())
    return {"rate": float(rate.group(1)), "requests": int(total.group(1)), "errors": errors}


# -- the run -----------------------------------------------------------------------------------------


class Bench:
    def __init__(self, args, procs: Processes, workdir: Path):
        self.args = args
        self.procs = procs
        self.workdir = workdir
        self.results: list[dict] = []
        self.failures: list[str] = []

    # ---- set-up
    def setup(self) -> None:
        a = self.args
        ensure_postgres()
        log(f"database {a.database}: recreating")
        recreate_database(a.database)
        redis_port = free_port()
        self.procs.start("redis", ["redis-server", "--bind", "127.0.0.1", "--port", str(redis_port), "--save", "",
                                   "--appendonly", "no"])
        self.broker = f"redis://127.0.0.1:{redis_port}/0"
        seed_file = self.workdir / "fake-seed.json"
        fake = self.procs.start("fake", [PY, str(BENCH / "fake.py"), "--latency", str(a.latency), "--methods",
                                         str(a.noc_methods), "--out", str(seed_file)], stdout=subprocess.PIPE)
        line = fake.stdout.readline().decode()
        if not line.startswith("READY "):
            raise RuntimeError(f"the fake did not start: {line!r} {self.procs.log_tail('fake')}")
        self.fake_url = line.split()[1]
        self.fake_seed = json.loads(seed_file.read_text())["methods"]
        self.env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "bench.settings",
            "DATABASE_URL": f"postgres://postgres@127.0.0.1:5432/{a.database}",
            "CELERY_BROKER_URL": self.broker,
            "BENCH_FAKE_URL": self.fake_url,
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(EXAMPLE)]),
            "DEBUG": "0",
            "SECRET_KEY": secrets.token_urlsafe(40),
            "FERNET_KEY": secrets.token_urlsafe(32),
        }
        if a.conn_max_age is not None:
            self.env["CONN_MAX_AGE"] = str(a.conn_max_age)
        os.environ.update({k: v for k, v in self.env.items() if k != "PYTHONPATH"})
        sys.path[:0] = [str(ROOT), str(EXAMPLE)]
        import django

        django.setup()
        from django.core.management import call_command

        call_command("migrate", run_syncdb=True, verbosity=0)
        self.seed_shoppers()
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.procs.start("gunicorn", [PY, "-m", "gunicorn", "shop.wsgi:application", "--workers",
                                      str(GUNICORN_WORKERS), "--bind", f"127.0.0.1:{self.port}",
                                      "--worker-class", "sync", "--log-level", "warning"],
                         env={**self.env, "DJANGO_SETTINGS_MODULE": "bench.settings"}, cwd=str(EXAMPLE))
        import requests

        wait_for(lambda: requests.get(f"{self.base}/wallet/api/me/", timeout=2).status_code in (401, 403),
                 "gunicorn", 60)
        log(f"stack up: gunicorn {self.base}, redis {self.broker}, caselle fake {self.fake_url}")

    def seed_shoppers(self) -> None:
        from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
        from django.contrib.sessions.backends.db import SessionStore
        from django.utils.crypto import get_random_string

        from vault_wallets.models import Customer, SavedPaymentMethod

        self.shoppers = {}
        for count in (5, 50):
            user = get_user_model().objects.create_user(f"bench{count}", password=secrets.token_urlsafe(16))
            customer = Customer.objects.create(account="default", user=user, reference_id=str(user.pk),
                                               name=f"Bench {count}")
            SavedPaymentMethod.objects.bulk_create([
                SavedPaymentMethod(customer=customer, processor_token=f"sbxpm_bench_{count}_{i}",
                                   processor_lookup=f"bench{count}-{i}", fingerprint=f"fp{count}-{i}",
                                   brand="visa", last4=f"{4242 + i:04d}"[-4:], exp_month=1 + i % 12,
                                   exp_year=2030 + i % 5, label=f"card {i}", is_default=(i == 0),
                                   verification_status="not_requested")
                for i in range(count)])
            session = SessionStore()
            session[SESSION_KEY] = str(user.pk)
            session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
            session[HASH_SESSION_KEY] = user.get_session_auth_hash()
            session.create()
            csrf = get_random_string(32)
            self.shoppers[count] = {
                "cookie": f"Cookie: sessionid={session.session_key}; csrftoken={csrf}",
                "csrf": f"X-CSRFToken: {csrf}",
            }

    # ---- interleaved A/B
    def pairs(self, name: str, subject, baseline, *, unit: str = "req/s", check=None) -> dict | None:
        a = self.args
        log(f"{name}: warm-up")
        subject(1)
        baseline(1)
        rows, cpu = [], []
        gunicorn = self.procs.children["gunicorn"].pid

        def measured(run, seconds):
            before = cpu_seconds(gunicorn)
            result = run(seconds)
            result["cpu_ms"] = (cpu_seconds(gunicorn) - before) * 1000 / max(result["requests"], 1)
            return result

        for i in range(a.pairs):
            s, b = measured(subject, a.duration), measured(baseline, a.duration)
            cpu.append((s["cpu_ms"], b["cpu_ms"]))
            for side, run in (("subject", s), ("baseline", b)):
                if run["errors"]:
                    self.failures.append(f"{name}: {run['errors']} failed {side} requests in pair {i + 1}")
            rows.append((s["rate"], b["rate"], s["rate"] / b["rate"]))
            log(f"{name}: pair {i + 1}/{a.pairs}: subject {s['rate']:.0f}/s, baseline {b['rate']:.0f}/s, "
                f"ratio {s['rate'] / b['rate']:.2f}; web CPU per request {s['cpu_ms']:.2f} / {b['cpu_ms']:.2f} ms")
        return self.record(name, value=statistics.median(r[0] for r in rows), unit=unit,
                           baseline=statistics.median(r[1] for r in rows),
                           ratio=statistics.median(r[2] for r in rows),
                           cpu_ms_per_request={"subject": round(statistics.median(c[0] for c in cpu), 2),
                                               "baseline": round(statistics.median(c[1] for c in cpu), 2)},
                           pairs=[{"subject": round(r[0], 1), "baseline": round(r[1], 1)} for r in rows])

    def record(self, name: str, **fields) -> dict:
        from django.conf import settings

        target = settings.TARGETS.get(name, {})
        checks, text = [], []
        if "ratio" in target and fields.get("ratio") is not None:
            checks.append(fields["ratio"] >= target["ratio"])
            text.append(f"≥ {target['ratio']:.2f}× baseline")
        if "rate" in target and fields.get("value") is not None and fields.get("unit", "").endswith("/s"):
            checks.append(fields["value"] >= target["rate"])
            text.append(f"≥ {target['rate']:,} {fields['unit']}")
        if "seconds" in target and fields.get("unit") == "s" and fields.get("value") is not None:
            checks.append(fields["value"] <= target["seconds"])
            text.append(f"≤ {target['seconds']:g} s")
        if "rss_factor" in target and fields.get("rss_ratio") is not None:
            checks.append(fields["rss_ratio"] <= target["rss_factor"])
            text.append(f"peak RSS at 10× the rows ≤ {target['rss_factor']:g}×")
        if "bound_factor" in target and fields.get("bound"):
            checks.append(fields["value"] <= target["bound_factor"] * fields["bound"])
            text.append(f"≤ {target['bound_factor']:g}× latency bound")
        row = {"scenario": name, "value": _round(fields.pop("value", None)), "unit": fields.pop("unit", ""),
               "baseline": _round(fields.pop("baseline", None)), "ratio": _round(fields.pop("ratio", None), 3),
               "target": " and ".join(text), "met": (all(checks) if checks else None),
               "load_average": [round(x, 2) for x in os.getloadavg()], **fields}
        self.results.append(row)
        return row

    # ---- scenarios
    def scenario_list(self, count: int) -> None:
        shopper = self.shoppers[count]
        import requests

        headers = {"Cookie": shopper["cookie"].split(": ", 1)[1]}
        ours = requests.get(f"{self.base}/wallet/api/payment-methods/", headers=headers, timeout=10).json()
        bare = requests.get(f"{self.base}/bench/baseline/payment-methods/", headers=headers, timeout=10).json()
        if [r["id"] for r in ours["results"]] != [r["id"] for r in bare["results"]] or len(bare["results"]) != count:
            raise RuntimeError(f"the list and its baseline disagree: {len(ours['results'])} vs {len(bare['results'])}")
        self.pairs(f"GET payment-methods ({count} methods)",
                   lambda d: wrk(f"{self.base}/wallet/api/payment-methods/", d, headers=[shopper["cookie"]]),
                   lambda d: wrk(f"{self.base}/bench/baseline/payment-methods/", d, headers=[shopper["cookie"]]))

    def scenario_token(self) -> None:
        shopper = self.shoppers[5]
        import requests

        headers = dict(h.split(": ", 1) for h in (shopper["cookie"], shopper["csrf"]))
        for path in ("/wallet/customer-token/", "/bench/baseline/customer-token/"):
            response = requests.post(f"{self.base}{path}", headers=headers, timeout=10)
            if response.status_code != 201:
                raise RuntimeError(f"POST {path}: {response.status_code} {response.text[:200]}")
        hdrs = [shopper["cookie"], shopper["csrf"]]
        self.pairs("POST customer-token",
                   lambda d: wrk(f"{self.base}/wallet/customer-token/", d, headers=hdrs, script="post.lua"),
                   lambda d: wrk(f"{self.base}/bench/baseline/customer-token/", d, headers=hdrs, script="post.lua"))

    def webhook_file(self, count: int) -> Path:
        from vault_wallets.processors import get_processor

        sandbox = get_processor("default")
        path = self.workdir / f"webhooks-{secrets.token_hex(4)}.tsv"
        stamp = secrets.token_hex(4)
        with open(path, "w") as out:
            for i in range(count):
                headers, body = sandbox.make_webhook("bench.ping", {"n": i}, event_id=f"evt_bench_{stamp}_{i}")
                fields = [body.decode()] + [f"{k}:{v}" for k, v in headers.items() if k != "content-type"]
                out.write("\t".join(fields) + "\n")
        return path

    def scenario_webhooks(self) -> None:
        from vault_wallets.models import WebhookEvent

        per_run = int(self.args.duration * 3000) + 2000

        def subject(seconds):
            path = self.webhook_file(per_run if seconds > 1 else 3000)
            before = WebhookEvent.objects.count()
            run = wrk(f"{self.base}/wallet/webhooks/default/", seconds, script="webhooks.lua",
                      script_args=[str(path), "/wallet/webhooks/default/"])
            stored = WebhookEvent.objects.count() - before
            if run["requests"] >= (per_run if seconds > 1 else 3000) or stored < run["requests"]:
                self.failures.append(f"webhook ingest: {run['requests']} requests but {stored} events stored")
            path.unlink()
            return run

        baseline_file = self.webhook_file(2000)

        def baseline(seconds):
            return wrk(f"{self.base}/bench/baseline/webhook/", seconds, script="webhooks.lua",
                       script_args=[str(baseline_file), "/bench/baseline/webhook/"])

        import redis

        client = redis.Redis.from_url(self.broker)
        queued_before = client.llen("celery")
        row = self.pairs("webhook ingest", subject, baseline, unit="events/s")
        row["enqueued"] = client.llen("celery") - queued_before
        if row["enqueued"] <= 0:
            self.failures.append("webhook ingest: nothing was enqueued to Redis")
        client.flushdb()  # the ingest runs with no worker consuming; the NOC worker starts clean

    def scenario_noc(self) -> None:
        import requests
        from django.db import connection

        from vault_wallets import conf
        from vault_wallets.models import Customer, PaymentMethodChange, SavedPaymentMethod
        from vault_wallets.testing.fakes.caselle import CaselleFake

        n = len(self.fake_seed)
        name = "NOC 10,000 methods, 50 ms per fetch" if n == 10000 and self.args.latency == 0.05 else \
            f"NOC {n:,} methods, {self.args.latency * 1000:g} ms per fetch"
        log(f"{name}: seeding {n} customers and methods")
        customers = Customer.objects.bulk_create([
            Customer(account="noc", reference_id=row["reference"], processor_customer_id=row["customer"])
            for row in self.fake_seed], batch_size=2000)
        SavedPaymentMethod.objects.bulk_create([
            SavedPaymentMethod(customer=customer, processor_token=row["token"], processor_method_id=row["method"],
                               processor_lookup=SavedPaymentMethod.lookup_for("noc", row["method"]),
                               brand="VISA", last4="4242", exp_month=9, exp_year=2030, is_default=True)
            for customer, row in zip(customers, self.fake_seed, strict=True)], batch_size=2000)
        connection.close()
        worker = self.procs.start("worker", [PY, "-m", "celery", "-A", "shop", "worker", "--loglevel=INFO",
                                             "--without-gossip", "--without-mingle", "--hostname",
                                             f"bench-{secrets.token_hex(3)}@%h"],
                                  env=self.env, cwd=str(EXAMPLE))
        wait_for(lambda: "ready." in (self.workdir / "worker.log").read_text(errors="replace"), "celery worker", 90)
        concurrency = re.search(r"concurrency:\s*(\d+)", (self.workdir / "worker.log").read_text(errors="replace"))
        processes = int(concurrency.group(1)) if concurrency else os.cpu_count()
        headers, body = CaselleFake().webhook_delivery(
            "provider.noc", {"customer_uid": "", "change_type": "updated",
                             "saved_payment_method_ids": [row["method"] for row in self.fake_seed]})
        log(f"{name}: POST a {len(body):,}-byte NOC to the webhook endpoint")
        cpu_before = {"worker": cpu_seconds(worker.pid), "fake": cpu_seconds(self.procs.children["fake"].pid)}
        start = time.time()
        response = requests.post(f"{self.base}/wallet/webhooks/noc/", data=body, headers=headers, timeout=30)
        if response.status_code != 200:
            self.failures.append(f"{name}: the webhook answered {response.status_code} {response.text[:200]}")
            self.record(name, value=None, unit="s", note=f"webhook answered {response.status_code}")
            self.procs.stop("worker")
            return
        event_uid = response.json()["id"]
        changes = PaymentMethodChange.objects.filter(source_event__uid=event_uid)
        deadline = time.monotonic() + self.args.noc_timeout
        done = 0
        while time.monotonic() < deadline and worker.poll() is None:
            done = changes.count()
            if done >= n:
                break
            time.sleep(0.25)
        last = changes.order_by("-created_at").values_list("created_at", flat=True).first()
        elapsed = (last.timestamp() - start) if last and done >= n else None
        updated = SavedPaymentMethod.objects.filter(customer__account="noc", exp_year=2031).count()
        cpu = {"worker": round(cpu_seconds(worker.pid) - cpu_before["worker"], 1),
               "fake": round(cpu_seconds(self.procs.children["fake"].pid) - cpu_before["fake"], 1)}
        self.procs.stop("worker")
        fetchers = processes * conf.get_setting("NOC_FETCH_CONCURRENCY") \
            if "NOC_FETCH_CONCURRENCY" in conf.DEFAULTS else processes
        bound = n * self.args.latency / fetchers
        if elapsed is None or updated != n:
            self.failures.append(f"{name}: {done} of {n} changes recorded, {updated} updated within "
                                 f"{self.args.noc_timeout} s")
        self.record(name, value=elapsed if elapsed is not None else None, unit="s", bound=round(bound, 2),
                    worker_processes=processes, concurrent_fetches=fetchers, body_bytes=len(body),
                    updated=updated, cpu_seconds=cpu)
        log(f"{name}: {elapsed if elapsed is None else round(elapsed, 2)} s for {updated} of {n} methods "
            f"(latency bound at {fetchers} concurrent fetches: {bound:.1f} s); CPU seconds used: {cpu}")

    def scenario_operations(self) -> None:
        from django.core.management import get_commands

        commands = get_commands()
        rows = self.args.import_rows
        for name, command in ((f"bulk import {rows:,} rows", "vault_import"),
                              (f"key rotation {rows:,} rows", "vault_rotate_keys")):
            if command in commands and hasattr(self, f"run_{command}"):
                getattr(self, f"run_{command}")(name)
            else:
                self.record(name, value=None, unit="rows/s", note=f"not available: no {command} command here")

    def ops(self, *args: str, keys: list[str] | None = None) -> dict:
        # The rotation's keys first; the run's own key stays readable (the other scenarios' rows).
        env = {**self.env, **({"BENCH_FERNET_KEYS": ",".join([*keys, self.env["FERNET_KEY"]])} if keys else {})}
        result = subprocess.run([PY, str(BENCH / "ops.py"), *args], env=env, cwd=str(ROOT), capture_output=True,
                                text=True, timeout=3600)
        if result.returncode:
            raise RuntimeError(f"bench/ops.py {args[0]} failed: {result.stderr[-2000:]}")
        lines = result.stdout.strip().splitlines()
        return json.loads(lines[-1]) if lines else {}

    def run_vault_import(self, name: str) -> None:
        """``vault_import`` of N rows against two raw ``bulk_create`` calls per batch of the same rows
        (interleaved), then the peak memory of an import of 10 × N rows."""
        rows = self.args.import_rows
        path, big = self.workdir / "import.csv", self.workdir / "import-big.csv"
        self.ops("csv", str(path), str(rows))
        runs = []
        for i in range(self.args.ops_pairs):
            self.ops("wipe")
            subject = self.ops("import", str(path))
            self.ops("wipe")
            baseline = self.ops("bulk", str(path))
            if subject["rows"] != rows or baseline["rows"] != rows:
                raise RuntimeError(f"import wrote {subject['rows']} rows, bulk_create {baseline['rows']} of {rows}")
            runs.append((subject, baseline))
            log(f"{name}: pair {i + 1}: import {subject['seconds']:.1f} s, bulk_create {baseline['seconds']:.1f} s")
        self.ops("wipe")
        self.ops("csv", str(big), str(rows * 10))
        large = self.ops("import", str(big))
        self.ops("wipe")
        small_rss = statistics.median(s["peak_rss_kib"] for s, _ in runs)
        self.record(name, value=rows / statistics.median(s["seconds"] for s, _ in runs), unit="rows/s",
                    baseline=rows / statistics.median(b["seconds"] for _, b in runs),
                    ratio=statistics.median(b["seconds"] / s["seconds"] for s, b in runs),
                    rows=rows, peak_rss_kib={"rows": small_rss, "10x rows": large["peak_rss_kib"]},
                    rss_ratio=round(large["peak_rss_kib"] / small_rss, 3))

    def run_vault_rotate_keys(self, name: str) -> None:
        """Rows encrypted under one key, then ``vault_rotate_keys`` to another (and back, each run)."""
        rows = self.args.import_rows
        path = self.workdir / "rotate.csv"
        self.ops("csv", str(path), str(rows))
        self.ops("wipe")
        old, new = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
        self.ops("bulk", str(path), keys=[old])
        self.ops("vacuum", "full", keys=[old])  # the import scenario's wipe left its rows dead (ops.py)
        runs = []
        for i in range(self.args.ops_pairs):
            if i:  # the table as it stands between two rotations (ops.py); the first comes after VACUUM FULL
                self.ops("vacuum", keys=[old])
            run = self.ops("rotate", keys=[new, old])
            runs.append(run)
            log(f"{name}: run {i + 1}: {run['rows']} methods in {run['seconds']:.1f} s")
            old, new = new, old
        self.ops("wipe", keys=[old, new])
        self.record(name, value=statistics.median(r["rows"] / r["seconds"] for r in runs), unit="rows/s",
                    rows=runs[0]["rows"])

    # ---- everything
    def run(self) -> None:
        only = set(self.args.only or [])

        def wanted(key: str) -> bool:
            return not only or key in only

        steps = [("list", lambda: (self.scenario_list(5), self.scenario_list(50))),
                 ("token", self.scenario_token), ("webhook", self.scenario_webhooks), ("noc", self.scenario_noc),
                 ("operations", self.scenario_operations)]
        for key, step in steps:
            if wanted(key):
                try:
                    step()
                except Exception as exc:  # noqa: BLE001 - report it, keep the other scenarios
                    self.failures.append(f"{key}: {type(exc).__name__}: {exc}")
                    log(f"{key} FAILED: {exc}")
                    if self.args.smoke or self.args.verbose:
                        import traceback

                        traceback.print_exc()


def _round(value, digits: int = 1):
    return None if value is None else round(value, digits)


def table(results: list[dict]) -> str:
    lines = ["| scenario | value | baseline | ratio | target | met | web CPU ms/request (subject / baseline) "
             "| load average |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        value = "—" if r["value"] is None else f"{r['value']:,} {r['unit']}"
        if r.get("bound"):
            value += f" (latency bound {r['bound']:g} s at {r['concurrent_fetches']} concurrent fetches"
            if r.get("cpu_seconds"):
                value += f"; CPU used: worker {r['cpu_seconds']['worker']} s, fake {r['cpu_seconds']['fake']} s"
            value += ")"
        if r.get("note"):
            value = r["note"]
        baseline = "—" if r["baseline"] is None else f"{r['baseline']:,} {r['unit']}"
        ratio = "—" if r["ratio"] is None else f"{r['ratio']:.2f}×"
        met = {True: "yes", False: "**no**", None: "—"}[r["met"]]
        load = " / ".join(f"{x:.2f}" for x in r["load_average"])
        cpu = r.get("cpu_ms_per_request")
        cpu = f"{cpu['subject']:.2f} / {cpu['baseline']:.2f}" if cpu else "—"
        lines.append(f"| {r['scenario']} | {value} | {baseline} | {ratio} | {r['target'] or '—'} | {met} | {cpu} "
                     f"| {load} |")
    return "\n".join(lines)


def write_docs(report: dict) -> None:
    path = ROOT / "docs" / "benchmarks.md"
    text = path.read_text()
    versions = ", ".join(f"{k} {v}" for k, v in report["versions"].items())
    block = (f"{DOC_START}\nRun of {report['date']} on {report['machine']}; {report['pairs']} interleaved pairs of "
             f"{report['duration']} s per scenario; load average at start {report['load_average_start']}.\n\n"
             f"Versions: {versions}.\n\n{table(report['results'])}\n{DOC_END}")
    start, end = text.find(DOC_START), text.find(DOC_END)
    if start == -1 or end == -1:
        raise RuntimeError("docs/benchmarks.md has no results markers")
    path.write_text(text[:start] + block + text[end + len(DOC_END):])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Benchmarks on the real stack (see docs/benchmarks.md).")
    parser.add_argument("--smoke", action="store_true", help="seconds long: every scenario once, nothing written")
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per wrk run")
    parser.add_argument("--noc-methods", type=int, default=10000)
    parser.add_argument("--latency", type=float, default=0.05, help="the fake processor's delay per call")
    parser.add_argument("--noc-timeout", type=float, default=180.0)
    parser.add_argument("--import-rows", type=int, default=100000, help="rows for the import and rotation scenarios")
    parser.add_argument("--ops-pairs", type=int, default=3)
    parser.add_argument("--database", default=os.environ.get("BENCH_DATABASE_NAME", "vw_bench"))
    parser.add_argument("--conn-max-age", type=int, default=None, help="override the example's CONN_MAX_AGE")
    parser.add_argument("--only", action="append", choices=["list", "token", "webhook", "noc", "operations"])
    parser.add_argument("--output", default=None, help="results file (default bench/results.json; none for smoke)")
    parser.add_argument("--no-docs", action="store_true", help="do not rewrite the table in docs/benchmarks.md")
    parser.add_argument("--docs-only", action="store_true", help="rewrite the docs table from bench/results.json")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    if args.docs_only:
        write_docs(json.loads((BENCH / "results.json").read_text()))
        return 0
    if args.smoke:
        args.pairs, args.duration, args.noc_methods, args.noc_timeout = 1, 1.0, 300, 60.0
        args.import_rows, args.ops_pairs = 2000, 1
    missing = [tool for tool in ("wrk", "redis-server", "pg_isready", "psql") if not shutil.which(tool)]
    if missing:
        log(f"missing {', '.join(missing)}: apt-get install -y wrk redis-server postgresql (make bench does)")
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="vw-bench-"))
    procs = Processes(workdir)
    load_start = [round(x, 2) for x in os.getloadavg()]
    bench = Bench(args, procs, workdir)
    try:
        bench.setup()
        bench.run()
    except Exception as exc:  # noqa: BLE001
        bench.failures.append(f"set-up: {type(exc).__name__}: {exc}")
        for name in ("gunicorn", "worker", "fake", "redis"):
            tail = procs.log_tail(name, 15)
            if tail:
                log(f"{name} log:\n{tail}")
    finally:
        procs.stop_all()
    report = {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(),
        "versions": tool_versions() if bench.results else {}, "pairs": args.pairs, "duration": args.duration,
        "gunicorn_workers": GUNICORN_WORKERS, "wrk_connections": WRK_CONNECTIONS,
        "load_average_start": load_start, "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "smoke": args.smoke, "results": bench.results, "failures": bench.failures,
    }
    print()
    print(table(bench.results))
    output = args.output or (None if args.smoke else str(BENCH / "results.json"))
    if output:
        Path(output).write_text(json.dumps(report, indent=2, default=str) + "\n")
        log(f"wrote {output}")
    if not args.smoke and not args.no_docs and not bench.failures and not args.only:
        write_docs(report)
        log("updated docs/benchmarks.md")
    shutil.rmtree(workdir, ignore_errors=True) if not bench.failures else log(f"logs kept in {workdir}")
    for failure in bench.failures:
        log(f"FAILED {failure}")
    if bench.failures:
        return 1
    missed = [r["scenario"] for r in bench.results if r["met"] is False]
    if missed and not args.smoke:
        log(f"targets missed: {', '.join(missed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
