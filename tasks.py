"""invoke entry point: the tasks live in the envkit package (src/envkit/tasks.py)."""

from envkit.tasks import ns

__all__ = ["ns"]
