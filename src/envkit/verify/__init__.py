"""Verify: run a recipe's checks inside the result and print a pass/fail table."""

from __future__ import annotations

import time
from typing import TextIO

from envkit.checks import Check, Result, Runner


def run_checks(checks: list[Check], runner: Runner, where: str, out: TextIO) -> bool:
    if not checks:
        print(f"verify {where}: the recipe declares no checks", file=out)
        return True
    print(f"verify {where}: {len(checks)} check{'s' * (len(checks) != 1)}", file=out, flush=True)
    results: list[tuple[Result, float]] = []
    for check in checks:
        started = time.monotonic()
        result = check.run(runner)
        results.append((result, time.monotonic() - started))
        mark = "PASS" if result.ok else "FAIL"
        print(f"  {mark}  {result.name[:60]:<44}  {results[-1][1]:5.1f}s  {result.detail}",
              file=out, flush=True)
    failed = sum(1 for r, _ in results if not r.ok)
    if failed:
        print(f"{failed} of {len(results)} checks failed", file=out)
    else:
        print(f"all {len(results)} checks passed", file=out)
    return not failed
