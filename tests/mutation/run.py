"""``make mutation``: mutmut over the security- and money-critical modules, scored per module.

The modules and the tests that may kill their mutants are configured in ``[tool.mutmut]`` of
``pyproject.toml`` (mutmut itself picks, per mutated function, only the selected tests that reach
it). This script runs mutmut, reads its per-file results, subtracts the survivors documented as
equivalent in ``docs/testing.md`` (a mutant named there with a reason), and writes
``mutants/report.json`` and ``mutants/report.md``. It exits 1 when a module scores under the
threshold, or when a documented survivor no longer exists (the list must stay true).

    python tests/mutation/run.py                    # every mutant (several minutes on 2 cores)
    python tests/mutation/run.py --sample 30        # a deterministic 30 % sample (CI)
    python tests/mutation/run.py --threshold 90

Mutants run on in-memory SQLite, where ``select_for_update()`` is a no-op. With
``MUTATION_DATABASE_URL`` set (CI: the PostgreSQL server), every survivor whose change touches a
``select_for_update`` line is run again there — its tests plus ``postgres_tests`` of
``[tool.vault_wallets.mutation]`` (the lock races, which skip on SQLite) — and counts as killed if
it dies there (``mutants/postgres.json``). So is every mutant of code that only runs on PostgreSQL
(``[tool.vault_wallets.mutation.postgres_only]``: a glob of mutated function names → the tests
that run it there), whether it survived on SQLite or no SQLite test reached it; without
``MUTATION_DATABASE_URL`` those count as not killed. ``--recheck-only`` does only that step and
the report.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]
MUTMUT = [sys.executable, "-m", "mutmut"]
DOC = ROOT / "docs" / "testing.md"
# A documented survivor is a table row in docs/testing.md: | `vault_wallets.x.x_f__mutmut_3` | reason |
DOC_ROW = re.compile(r"^\|\s*`(vault_wallets\.[\w.]+__mutmut_\d+)`\s*\|\s*(.+?)\s*\|\s*$")

KILLED = {"killed", "timeout", "segfault", "caught by type check"}


def _status(exit_code) -> str:
    from mutmut.stats import status_by_exit_code

    return status_by_exit_code[exit_code]


def configured_modules() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]
    return [path[:-3].replace("/", ".") for path in config["only_mutate"]]


def module_floors() -> dict[str, float]:
    """Per-module floors under the target (``[tool.vault_wallets.mutation] floors``): modules still
    being brought up to the target are held at their current score so they cannot slide back."""
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]
    return dict(tool.get("vault_wallets", {}).get("mutation", {}).get("floors", {}))


def postgres_tests() -> list[str]:
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]
    return list(tool.get("vault_wallets", {}).get("mutation", {}).get("postgres_tests", []))


def postgres_only() -> dict[str, list[str]]:
    """Code that runs only on PostgreSQL: a glob of mangled function names (``x_f``, ``xǁCǁm``)
    → the tests that run it there (``[tool.vault_wallets.mutation.postgres_only]``)."""
    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]
    table = tool.get("vault_wallets", {}).get("mutation", {}).get("postgres_only", {})
    return {pattern: list(tests) for pattern, tests in table.items()}


def postgres_only_tests(mutant: str, table: dict[str, list[str]]) -> list[str] | None:
    """The tests that run ``mutant``'s function on PostgreSQL, or None when it runs on SQLite too."""
    module, _, function = re.sub(r"__mutmut_\d+$", "", mutant).rpartition(".")
    found = [test for pattern, tests in table.items()
             if fnmatch.fnmatchcase(f"{module}.{function}", pattern) for test in tests]
    return sorted(set(found)) if found else None


def documented_survivors() -> dict[str, str]:
    if not DOC.exists():
        return {}
    found = {}
    for line in DOC.read_text().splitlines():
        match = DOC_ROW.match(line)
        if match:
            found[match.group(1)] = match.group(2)
    return found


def read_results() -> dict[str, str]:
    results = {}
    for meta in (ROOT / "mutants").rglob("*.py.meta"):
        data = json.loads(meta.read_text())
        for name, code in data.get("exit_code_by_key", {}).items():
            results[name] = _status(code)
    return results


def module_of(mutant: str, modules: list[str]) -> str | None:
    for module in sorted(modules, key=len, reverse=True):
        if mutant.startswith(module + "."):
            return module
    return None


def in_sample(name: str, percent: int) -> bool:
    return int(hashlib.sha256(name.encode()).hexdigest()[:8], 16) % 100 < percent


def run(percent: int) -> None:
    shutil.rmtree(ROOT / "mutants", ignore_errors=True)
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("DATABASE_URL", None)  # mutants run on in-memory SQLite: fast, isolated
    args: list[str] = []
    if percent < 100:
        # Generate the mutants (and the per-test stats) first, then run only the sample.
        # (mutmut then complains that the filter matched nothing, which is the point.)
        subprocess.run([*MUTMUT, "run", "vault_wallets.__no_such_mutant__"], cwd=ROOT, env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        args = sorted(name for name in read_results() if in_sample(name, percent))
    subprocess.run([*MUTMUT, "run", *args], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, check=False)


def touches_lock(mutant: str) -> bool:
    """Whether the mutant's diff (``mutmut show``) adds or removes a ``select_for_update`` line."""
    shown = subprocess.run([*MUTMUT, "show", mutant], cwd=ROOT, capture_output=True, text=True, check=False)
    return any(line.startswith(("+", "-")) and not line.startswith(("+++", "---")) and "select_for_update" in line
               for line in shown.stdout.splitlines())


def tests_reaching(mutant: str) -> list[str]:
    """The tests mutmut's stats say reach the mutated function (what mutmut runs it against)."""
    stats = json.loads((ROOT / "mutants" / "mutmut-stats.json").read_text())
    function = re.sub(r"__mutmut_\d+$", "", mutant)
    return sorted(stats.get("tests_by_mangled_function_name", {}).get(function, []))


def _pytest_on(database_url: str, mutants: dict[str, list[str]]) -> dict[str, int]:
    """Each mutant's tests on ``database_url`` (``tests/mutation/pg_recheck.py``: one process, a
    forked child per mutant); ``""`` is the unmutated run of every test. Exit codes; -1: timed out
    (a lock mutant that hangs in a deadlock is caught, as mutmut counts a timeout)."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PY_IGNORE_IMPORTMISMATCH": "1", "MUTANT_UNDER_TEST": "",
           "DATABASE_URL": database_url,
           "TEST_DATABASE_NAME": os.environ.get("MUTATION_TEST_DATABASE_NAME", "test_vault_wallets_mutation")}
    plan, results = ROOT / "mutants" / "postgres-plan.json", ROOT / "mutants" / "postgres-exit-codes.json"
    plan.write_text(json.dumps({"mutants": mutants, "timeout": 900}))
    results.unlink(missing_ok=True)
    with open(ROOT / "mutants" / "postgres-recheck.log", "a") as log:  # read it when the unmutated run fails
        subprocess.run([sys.executable, str(ROOT / "tests" / "mutation" / "pg_recheck.py"), str(plan), str(results)],
                       cwd=ROOT / "mutants", env=env, stdout=log, stderr=subprocess.STDOUT, check=False)
    return json.loads(results.read_text()) if results.exists() else {"": -2}


def postgres_candidates() -> dict[str, list[str]]:
    """The mutants to run again on PostgreSQL, each with its tests there: lock-touching survivors
    (their own tests and ``postgres_tests``), and every mutant of ``postgres_only`` code that
    SQLite did not kill (survived, or no SQLite test reached it) with that code's tests."""
    modules, table = configured_modules(), postgres_only()
    candidates: dict[str, list[str]] = {}
    for name, status in sorted(read_results().items()):
        if not module_of(name, modules):
            continue
        only = postgres_only_tests(name, table)
        if only is not None:
            if status in ("survived", "no tests"):
                candidates[name] = only
        elif status == "survived" and touches_lock(name):
            candidates[name] = sorted({*postgres_tests(), *tests_reaching(name)})
    return candidates


def recheck_on_postgres(database_url: str) -> None:
    """Run the lock-touching survivors and the PostgreSQL-only mutants again on ``database_url``;
    record which die there."""
    started = time.monotonic()
    candidates = postgres_candidates()
    outcome: dict[str, str] = {}
    if candidates:
        codes = _pytest_on(database_url, candidates)
        if codes.get("") != 0:
            # Once in CI (2026-12-02) the unmutated run failed there and passed on every run by hand since:
            # say so, keep its output, and try once more before giving up on the re-check.
            print("PostgreSQL re-check: the unmutated run failed once (mutants/postgres-recheck.log); running it again")
            codes = _pytest_on(database_url, candidates)
        if codes.get("") != 0:  # the unmutated code must pass there first
            print(f"PostgreSQL re-check skipped: the tests fail on {database_url.split('@')[-1]} without a mutant")
            return
        for name in candidates:
            code = codes.get(name, -2)
            outcome[name] = "killed" if code in (1, -1) else "survived" if code == 0 else f"error (exit {code})"
            print(f"{name}: {outcome[name]} on PostgreSQL")
    (ROOT / "mutants" / "postgres.json").write_text(json.dumps(outcome, indent=2, sort_keys=True))
    print(f"PostgreSQL re-check: {len(outcome)} mutants in {time.monotonic() - started:.0f} s")


def killed_on_postgres() -> dict[str, str]:
    path = ROOT / "mutants" / "postgres.json"
    return json.loads(path.read_text()) if path.exists() else {}


def report(threshold: float, percent: int) -> int:
    modules = configured_modules()
    results = read_results()
    documented = documented_survivors()
    on_postgres = killed_on_postgres()
    per_module: dict[str, dict] = defaultdict(lambda: {"killed": 0, "survived": [], "equivalent": [],
                                                      "not_run": 0, "other": []})
    for name, status in sorted(results.items()):
        module = module_of(name, modules)
        if module is None:
            continue
        row = per_module[module]
        if status == "not checked":
            row["not_run"] += 1
        elif status in KILLED or (status in ("survived", "no tests") and on_postgres.get(name) == "killed"):
            row["killed"] += 1
        elif status in ("survived", "no tests") and name in documented:
            row["equivalent"].append(name)
        elif status == "survived":
            row["survived"].append(name)
        else:  # "no tests", "suspicious", "skipped": not killed, so they count against the score
            row["other"].append(f"{name} ({status})")
    failed = False
    floors = module_floors()
    lines = ["| module | checked | killed | equivalent (documented) | survived | score | required |",
             "|---|---|---|---|---|---|---|"]
    summary = {}
    for module in modules:
        row = per_module[module]
        scored = row["killed"] + len(row["survived"]) + len(row["other"])
        score = 100.0 * row["killed"] / scored if scored else 100.0
        required = min(threshold, floors.get(module, threshold))
        ok = score >= required
        failed |= not ok
        verdict = "met" if score >= threshold else (f"floor {required:g} % held" if ok else "MISSED")
        lines.append(f"| `{module}` | {scored + len(row['equivalent'])} | {row['killed']} | {len(row['equivalent'])} "
                     f"| {len(row['survived']) + len(row['other'])} | {score:.1f} % | {required:g} %: {verdict} |")
        summary[module] = {"score": round(score, 1), "required": required, **row}
    stale = sorted(name for name in documented if module_of(name, modules) and name not in results)
    if stale and percent == 100:
        failed = True
        lines.append("")
        lines.append("Documented survivors that no longer exist (update docs/testing.md): " + ", ".join(stale))
    for module in modules:
        survivors = per_module[module]["survived"] + per_module[module]["other"]
        if survivors:
            lines.append("")
            lines.append(f"Survivors in `{module}` (see `mutmut show NAME`): " + ", ".join(survivors))
    pg_killed = sorted(name for name, outcome in on_postgres.items() if outcome == "killed" and name in results)
    if pg_killed:
        lines.append("")
        lines.append("Not killed on SQLite, killed on PostgreSQL (lock and PostgreSQL-only mutants): "
                     + ", ".join(pg_killed))
    text = "\n".join(lines)
    (ROOT / "mutants").mkdir(exist_ok=True)
    (ROOT / "mutants" / "report.md").write_text(f"Sample: {percent} % of mutants\n\n{text}\n")
    (ROOT / "mutants" / "report.json").write_text(json.dumps({"sample_percent": percent, "threshold": threshold,
                                                              "modules": summary}, indent=2))
    print(text)
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sample", type=int, default=100, help="percent of mutants to run (deterministic)")
    parser.add_argument("--threshold", type=float, default=90.0, help="minimum percent killed per module")
    parser.add_argument("--report-only", action="store_true", help="score the last run again without running")
    parser.add_argument("--recheck-only", action="store_true",
                        help="only re-run the lock survivors and the PostgreSQL-only mutants on "
                             "MUTATION_DATABASE_URL, then report")
    options = parser.parse_args()
    if not 1 <= options.sample <= 100:
        parser.error("--sample is a percentage between 1 and 100")
    if not (options.report_only or options.recheck_only):
        # A test that fails only in a forked child (as mutmut runs each mutant) would "kill" every
        # mutant it reaches: refuse to score with such a test in the selection.
        if subprocess.run([sys.executable, str(ROOT / "tests" / "mutation" / "fork_check.py")], cwd=ROOT).returncode:
            print("the mutation test selection is not fork-safe (see above): scores would be meaningless")
            return 1
        run(options.sample)  # (starts from an empty mutants/: no earlier postgres.json)
    database_url = os.environ.get("MUTATION_DATABASE_URL", "")
    if database_url and not options.report_only:
        recheck_on_postgres(database_url)
    return report(options.threshold, options.sample)


if __name__ == "__main__":
    sys.exit(main())
