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
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
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


def report(threshold: float, percent: int) -> int:
    modules = configured_modules()
    results = read_results()
    documented = documented_survivors()
    per_module: dict[str, dict] = defaultdict(lambda: {"killed": 0, "survived": [], "equivalent": [],
                                                      "not_run": 0, "other": []})
    for name, status in sorted(results.items()):
        module = module_of(name, modules)
        if module is None:
            continue
        row = per_module[module]
        if status == "not checked":
            row["not_run"] += 1
        elif status in KILLED:
            row["killed"] += 1
        elif status == "survived" and name in documented:
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
    options = parser.parse_args()
    if not 1 <= options.sample <= 100:
        parser.error("--sample is a percentage between 1 and 100")
    if not options.report_only:
        # A test that fails only in a forked child (as mutmut runs each mutant) would "kill" every
        # mutant it reaches: refuse to score with such a test in the selection.
        if subprocess.run([sys.executable, str(ROOT / "tests" / "mutation" / "fork_check.py")], cwd=ROOT).returncode:
            print("the mutation test selection is not fork-safe (see above): scores would be meaningless")
            return 1
        run(options.sample)
    return report(options.threshold, options.sample)


if __name__ == "__main__":
    sys.exit(main())
