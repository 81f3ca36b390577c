"""The ``envkit`` console script: the same tasks as ``invoke``, for pip-installed users."""

from __future__ import annotations

from invoke import Program

from envkit import __version__
from envkit.cli.tasks import ns

program = Program(name="envkit", binary="envkit", version=__version__, namespace=ns)


def main() -> None:
    program.run()
