"""Run a long command with its output in a log file, line by line to a callback.

Builds and host scripts both need this: the whole output kept, the last lines at
hand for an error, and on Ctrl-C the command and its children stopped (SIGINT
first, so the docker CLI cancels the build on the engine; then SIGKILL).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path

from envkit.secrets import redact as masked


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
            with shielded():
                stop(proc)
                log.write("\n[envkit] interrupted\n")
            raise


GRACE = 10.0  # seconds a command has to stop on SIGINT before it gets SIGKILL


def stop(proc: subprocess.Popen[str]) -> None:
    """SIGINT to the command's process group (the docker CLI cancels its build), SIGKILL
    if it is still there after GRACE; then SIGKILL whatever the group still holds: a
    script's background jobs ignore SIGINT and would outlive it."""
    for sig, wait in ((signal.SIGINT, GRACE), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        if _exited(proc.pid, wait):
            break
    with contextlib.suppress(ProcessLookupError):  # unreaped, the leader keeps the group's id
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


def _exited(pid: int, timeout: float) -> bool:
    """Whether the child exited within ``timeout``; it is left unreaped (WNOWAIT)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT):
                return True
        except ChildProcessError:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


@contextlib.contextmanager
def shielded() -> Iterator[None]:
    """A second Ctrl-C (users press it twice) or a SIGTERM must not cut the stopping short:
    the command would be left running."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, signal.SIG_IGN)
                for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            if handler is not None:
                signal.signal(sig, handler)
