"""Run a long command with its output in a log file, line by line to a callback.

Builds and host scripts both need this: the whole output kept, the last lines at
hand for an error, and on Ctrl-C the command and its children stopped (SIGINT
first, so the docker CLI cancels the build on the engine; then SIGKILL).
"""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from .secrets import redact as masked


def run(argv: list[str], log_path: Path, on_line: Callable[[str], None], *,
        env: Mapping[str, str], cwd: Path | None = None, keep: int = 40,
        redact: Sequence[str] = ()) -> tuple[int, list[str]]:
    """The exit code and the last ``keep`` lines of output. Each text in ``redact`` (a
    secret's) is shown as *** in the log, the callback and the lines returned."""
    recent: list[str] = []
    with open(log_path, "w", encoding="utf-8") as log:
        log.write("$ " + " ".join(argv) + "\n")
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, env=dict(env), cwd=cwd, text=True,
                                errors="replace", start_new_session=True)
        try:
            assert proc.stdout is not None
            for raw in proc.stdout:
                line = masked(raw.rstrip("\n"), list(redact)) if redact else raw.rstrip("\n")
                log.write(line + "\n")
                recent = [*recent[-(keep - 1):], line]
                on_line(line)
            return proc.wait(), recent
        except BaseException:  # Ctrl-C, or anything else: never leave it running
            stop(proc)
            log.write("\n[envkit] interrupted\n")
            raise


def stop(proc: subprocess.Popen[str]) -> None:
    for sig, wait in ((signal.SIGINT, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=wait)
            return
        except ProcessLookupError:
            return
        except subprocess.TimeoutExpired:
            continue
