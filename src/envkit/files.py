"""Writing a file whole or not at all: the lock, rendered files, bake files, drafts."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write(target: Path, data: bytes, mode: int) -> None:
    """``data`` at ``target`` whole or not at all: a temp file beside it, synced, then a
    rename; a reader never sees half a file, and a failure leaves no temp file."""
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
