"""invoke entry point: the tasks live in the envkit package (src/envkit/tasks.py)."""

from envkit.cli.tasks import ns

__all__ = ["ns"]
