"""Is the mutation test selection safe to run in a forked child, as mutmut runs every mutant?

mutmut 3 runs the selected tests once in its own process (to learn which tests reach which
function), then forks a child per mutant and runs those tests again there.  A test that passes
in a fresh process but fails in such a child "kills" every mutant it reaches, whatever the
mutant changed: the score goes up and means nothing.  This runs the selection in this process,
then again in a forked child, and lists the tests that fail only in the child.

    python tests/mutation/fork_check.py            # the whole [tool.mutmut] selection
    python tests/mutation/fork_check.py tests/test_api.py

Exit 0 when every test that passed in the parent passed in the child too.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]


class _Failures:
    def __init__(self):
        self.failed: set[str] = set()

    def pytest_runtest_logreport(self, report):
        if report.failed:
            self.failed.add(report.nodeid)


def _run(selection: list[str]) -> set[str]:
    collector = _Failures()
    pytest.main(["-p", "no:cacheprovider", "-q", "--no-header", "-p", "no:randomly", *selection],
                plugins=[collector])
    return collector.failed


def main(argv: list[str]) -> int:
    os.chdir(ROOT)
    selection = argv or tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"][
        "pytest_add_cli_args_test_selection"]
    parent = _run(selection)
    out = Path(tempfile.mkstemp(suffix=".fork-check")[1])
    pid = os.fork()
    if pid == 0:
        try:
            out.write_text("\n".join(sorted(_run(selection))))
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    child = set(filter(None, out.read_text().splitlines()))
    out.unlink()
    only_child = sorted(child - parent)
    print(f"\nfork check: {len(parent)} failed in the parent, {len(child)} in the forked child")
    for nodeid in only_child:
        print(f"  fails only in a forked child: {nodeid}")
    return 1 if only_child else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
