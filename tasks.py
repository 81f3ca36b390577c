"""invoke entry point: the tasks live in the envkit package (src/envkit/cli/tasks.py)."""

from envkit.cli.tasks import ns

__all__ = ["ns"]
