"""Run the tests of many mutants on one database, a forked child per mutant (as mutmut runs them).

    python tests/mutation/pg_recheck.py PLAN.json RESULTS.json     # from mutants/, by run.py

``PLAN.json`` is ``{"mutants": {name: [tests]}, "timeout": seconds}``; ``DATABASE_URL`` and
``TEST_DATABASE_NAME`` come from the caller. The unmutated code runs every test once in this
process first (which imports Django, the app and the tests once, and creates the test
database); then a forked child per mutant sets ``MUTANT_UNDER_TEST`` and runs that mutant's
tests, reusing the database. A new interpreter per mutant cost ten times as much, almost all of
it start-up. ``RESULTS.json`` maps ``""`` to the clean run's exit code and each mutant to
pytest's (``-1``: timed out, as a mutant that deadlocks).
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pytest

ARGS = ["--rootdir=.", "-x", "-q", "-p", "no:cacheprovider", "-p", "no:randomly", "--reuse-db"]


def _close_connections() -> None:
    """No database connection may be shared with a child (its exit would close it for us)."""
    from django.db import connections

    connections.close_all()


def _child(name: str, tests: list[str], timeout: int) -> int:
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 3
        try:
            os.environ["MUTANT_UNDER_TEST"] = name
            signal.alarm(timeout)
            code = int(pytest.main([*ARGS, "--tb=no", *tests]))  # nobody reads the tracebacks
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return -1 if os.WTERMSIG(status) == signal.SIGALRM else 128 + os.WTERMSIG(status)
    return os.WEXITSTATUS(status)


def main(plan_path: str, results_path: str) -> int:
    plan = json.loads(Path(plan_path).read_text())
    mutants: dict[str, list[str]] = plan["mutants"]
    timeout = int(plan.get("timeout", 900))
    everything = sorted({test for tests in mutants.values() for test in tests})
    os.environ["MUTANT_UNDER_TEST"] = ""
    results: dict[str, int] = {"": int(pytest.main([*ARGS, "--create-db", *everything]))}
    if results[""] == 0:
        for name, tests in mutants.items():
            _close_connections()
            results[name] = _child(name, tests, timeout)
            Path(results_path).write_text(json.dumps(results, indent=2))  # progress, if interrupted
    Path(results_path).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
