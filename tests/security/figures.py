"""Run the attack suite and publish its figures in docs/security.md.

    .venv/bin/python -m tests.security.figures            # run tests/security, rewrite the table
    .venv/bin/python -m tests.security.figures --render FIGURES.json   # only render a saved run

The suite counts every attempt (tests/security/conftest.py ``record``) and writes the counts as
JSON when ``VAULT_SECURITY_FIGURES`` names a file; this script renders them between the
``figures`` markers of docs/security.md.  It fails (exit 1) if the suite failed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "security.md"
START, END = "<!-- figures:start -->", "<!-- figures:end -->"


def render(figures: dict, database: str) -> str:
    rows = figures["categories"]
    lines = [
        f"Figures of one run ({datetime.now(timezone.utc):%Y-%m-%d}, {database}; pytest exit status "
        f"{figures['pytest_exit_status']}):",
        "",
        "| Category | Attempts | Refused | Leaks | 5xx |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, row in rows.items():
        lines.append(f"| {name} | {row['attempts']} | {row['refused']} | {row['leaks']} | {row['5xx']} |")
    total = {k: sum(r[k] for r in rows.values()) for k in ("attempts", "refused", "leaks", "5xx")}
    lines.append(f"| **all** | **{total['attempts']}** | **{total['refused']}** | **{total['leaks']}** | "
                 f"**{total['5xx']}** |")
    lines += ["", (
        '"Refused" is a 4xx — or, for the authorization matrix, an attempt that read and changed nothing'
        " of A's (B reading B's own wallet counts); for the secret scan, a surface searched clean; for "
        'replays, a duplicate stored once. Expected to succeed: the control rows (valid deliveries, A '
        "acting on A's own wallet, staff on the staff and admin routes), the first of each set of replays, "
        "chunked deliveries under a de-"
        'chunking server (the other half get 411), generated webhook payloads whose id and type are '
        'clean, and schemathesis requests that are valid. Secret-scan attempts are the items searched '
        '(log records, answers, pages, database cells).'
    )]
    return "\n".join(lines)


def write_doc(table: str) -> None:
    text = DOC.read_text(encoding="utf-8")
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    DOC.write_text(f"{head}{START}\n{table}\n{END}{tail}", encoding="utf-8")


def main(argv: list[str]) -> int:
    database = "PostgreSQL" if os.environ.get("DATABASE_URL") else "SQLite"
    if argv[:1] == ["--render"]:
        figures = json.loads(Path(argv[1]).read_text(encoding="utf-8"))
        status = 0
    else:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "figures.json"
            env = {**os.environ, "VAULT_SECURITY_FIGURES": str(path)}
            status = subprocess.call([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                      "tests/security", *argv], cwd=ROOT, env=env)
            figures = json.loads(path.read_text(encoding="utf-8"))
    table = render(figures, database)
    write_doc(table)
    print(table)
    return 1 if status else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
