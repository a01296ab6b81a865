"""The operations scenarios' subject and baseline, each run in a fresh process by ``bench/run.py``.

    python bench/ops.py csv PATH ROWS          # write an import file: ROWS methods, 10 per customer
    python bench/ops.py import PATH            # subject: manage.py vault_import PATH --account default
    python bench/ops.py bulk PATH              # baseline: the same rows with two raw bulk_create calls per batch
    python bench/ops.py wipe                   # delete what the last run created
    python bench/ops.py rotate [JOBS]          # subject: manage.py vault_rotate_keys [--jobs JOBS]
    python bench/ops.py vacuum [full]          # VACUUM [FULL] ANALYZE the vault's tables (PostgreSQL)

Each prints one JSON line: seconds, rows, peak RSS (KiB) and CPU seconds (user + system) of this
process and, when PostgreSQL runs on this machine, of its backend serving this process
(``db_cpu_seconds``) — the CPU figures depend far less on the machine's load than the wall-clock one.
"""

from __future__ import annotations

import csv
import io
import json
import os
import resource
import sys
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

_ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(_ROOT), str(_ROOT / "example_project")]
PER_CUSTOMER = 10
BATCH = 1000
COLUMNS = ["customer_reference", "processor_customer_id", "token", "brand", "last4", "exp_month", "exp_year"]


def write_csv(path: str, rows: int) -> None:
    with open(path, "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(COLUMNS)
        for i in range(rows):
            customer = i // PER_CUSTOMER
            writer.writerow([f"imp-{customer}", f"cus_imp{customer:08d}", f"sbxpm_imp{i:010d}", "visa",
                             f"{i % 10000:04d}", 1 + i % 12, 2030 + i % 6])


def rows_of(path: str):
    with open(path, newline="") as handle:
        yield from csv.DictReader(handle)


def bulk(path: str) -> int:
    """The least an import can do: create the customers and the methods, batch by batch."""
    from vault_wallets.models import Customer, SavedPaymentMethod

    count, batch = 0, []

    def flush():
        refs = sorted({r["customer_reference"] for r in batch})
        existing = {c.reference_id: c for c in Customer.objects.filter(account="default", reference_id__in=refs)}
        created = Customer.objects.bulk_create([
            Customer(account="default", reference_id=ref,
                     processor_customer_id=next(r["processor_customer_id"] for r in batch
                                                if r["customer_reference"] == ref))
            for ref in refs if ref not in existing])
        existing.update({c.reference_id: c for c in created})
        SavedPaymentMethod.objects.bulk_create([
            SavedPaymentMethod(customer=existing[r["customer_reference"]], processor_token=r["token"],
                               processor_lookup=SavedPaymentMethod.lookup_for("default", r["token"]),
                               brand=r["brand"], last4=r["last4"], exp_month=int(r["exp_month"]),
                               exp_year=int(r["exp_year"]))
            for r in batch])

    for row in rows_of(path):
        batch.append(row)
        count += 1
        if len(batch) >= BATCH:
            flush()
            batch = []
    if batch:
        flush()
    return count


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "bench.settings")
    action, args = sys.argv[1], sys.argv[2:]
    if action == "csv":
        write_csv(args[0], int(args[1]))
        return
    import django

    django.setup()
    from django.core.management import call_command

    from vault_wallets.models import Customer, SavedPaymentMethod

    backend = _backend()
    start = time.perf_counter()
    rows = 0
    if action == "import":
        sink = io.StringIO()
        with redirect_stdout(sink), redirect_stderr(sink):
            call_command("vault_import", args[0], account="default")
        rows = SavedPaymentMethod.objects.filter(customer__account="default",
                                                 customer__reference_id__startswith="imp-").count()
    elif action == "bulk":
        rows = bulk(args[0])
    elif action == "rotate":
        rows = SavedPaymentMethod.objects.count()
        start = time.perf_counter()
        sink = io.StringIO()
        with redirect_stdout(sink), redirect_stderr(sink):
            call_command("vault_rotate_keys", jobs=int(args[0]) if args else 1)
    elif action == "vacuum":
        # A rotation rewrites every row; with autovacuum off (as on the bench machine's PostgreSQL) the
        # dead versions of the last run stay in the tables and indexes and each run is slower than the
        # one before. Autovacuum (PostgreSQL's default) would have cleaned up between two rotations,
        # which are days apart, not seconds: plain VACUUM. FULL: once, after the import scenario's
        # own wipe of 1,100,000 rows, which no shop's table has just been through.
        from django.db import connection

        full = "FULL " if args[:1] == ["full"] else ""
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                for model in (Customer, SavedPaymentMethod):
                    cursor.execute(f"VACUUM {full}ANALYZE {connection.ops.quote_name(model._meta.db_table)}")
    elif action == "wipe":
        SavedPaymentMethod.objects.filter(customer__reference_id__startswith="imp-").delete()
        Customer.objects.filter(reference_id__startswith="imp-").delete()
    else:
        raise SystemExit(f"unknown action {action!r}")
    seconds = time.perf_counter() - start
    usage = resource.getrusage(resource.RUSAGE_SELF)
    workers = resource.getrusage(resource.RUSAGE_CHILDREN)  # vault_rotate_keys --jobs
    try:  # None when this process's backend is gone (the workers of --jobs use their own)
        db_cpu = backend and round(_cpu_of(backend[0]) - backend[1], 2)
    except OSError:
        db_cpu = None
    print(json.dumps({"seconds": seconds, "rows": rows, "peak_rss_kib": usage.ru_maxrss,
                      "cpu_seconds": round(usage.ru_utime + usage.ru_stime + workers.ru_utime + workers.ru_stime, 2),
                      "db_cpu_seconds": db_cpu}))


def _backend():
    """(pid, CPU seconds so far) of this process's PostgreSQL backend when it runs on this machine
    and /proc shows it (else None): the database's share of the work, measured like ours."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    try:
        return pid, _cpu_of(pid)
    except OSError:
        return None


def _cpu_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    main()
