"""CI templates: the GitHub Actions workflow `invoke ci` writes for a repository of
recipes. Every recipe is validated (rendered and linted in every variant, each lock
current), its pip steps resolved, then built and verified, one job per recipe.

Values never reach a shell unquoted: recipe paths are held to a plain grammar (letters,
digits, ``._/-``) and reach the build job through the matrix and an environment variable,
never through ``${{ }}`` in a script; the envkit requirement is shell-quoted and may not
hold an expression.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import yaml

from envkit import __version__
from envkit.diagnostics import EnvkitError, error

WORKFLOW = Path(".github/workflows/envkit.yml")
PATH = re.compile(r"(?:[A-Za-z0-9_][A-Za-z0-9._-]*/)*[A-Za-z0-9_][A-Za-z0-9._-]*\.ya?ml")
RUNNER = "ubuntu-24.04"
# Actions by major version (their maintainers move the tag with fixes); pin a commit in
# your copy if your policy wants one.
CHECKOUT, SETUP_PYTHON = "actions/checkout@v4", "actions/setup-python@v5"


def recipe_paths(root: Path, given: list[str]) -> list[str]:
    """The recipes the workflow covers, as paths relative to ``root``: those given, else
    every recipe in ``root/recipes``. Each must be a recipe file below ``root``."""
    from envkit.load.catalog import Catalog

    if not given:
        folder = root / "recipes"
        given = [p.relative_to(root).as_posix() for p in sorted(folder.glob("*.yaml"))
                 if p.name != "compat.yaml"] if folder.is_dir() else []
        if not given:
            raise error(f"no recipes in {folder}", path="--recipe",
                        hint="--recipe PATH (repeat for several), relative to the repository")
    catalog = Catalog()
    out, problems = [], []
    for path in given:
        if not PATH.fullmatch(path) or ".." in path.split("/"):
            problems += error(f"{path!r}: a recipe path here is relative to the repository "
                              "and made of letters, digits and ._/- (it lands in a workflow)",
                              path="--recipe").diagnostics
            continue
        if not (root / path).is_file():
            problems += error(f"{path}: no such file below {root}", path="--recipe").diagnostics
            continue
        recipe = catalog.load(root / path)
        problems += recipe.problems
        out.append(path)
    if problems:
        raise EnvkitError(problems)
    return list(dict.fromkeys(out))


def user_workflow(recipes: list[str], requirement: str = "", python: str = "3.11") -> str:
    """The workflow's text: the same recipes, requirement and Python give the same bytes."""
    requirement = requirement or f"envkit=={__version__}"
    if "${{" in requirement or any(c in requirement for c in "\n\r\0"):
        raise error(f"the envkit requirement {requirement!r} may not hold an expression or "
                    "a line break", path="--envkit")
    if not re.fullmatch(r"3\.\d{1,2}", python):
        raise error(f"Python {python!r}: expected 3.X", path="--python")
    setup = [
        {"uses": CHECKOUT},
        {"uses": SETUP_PYTHON, "with": {"python-version": python}},
        {"name": "install envkit", "run": f"python -m pip install {shlex.quote(requirement)}"},
    ]
    each = " ".join(f"--recipe {shlex.quote(p)}" for p in recipes)
    flow = {
        "name": "envkit recipes",
        "on": {"push": {"branches": ["main"]}, "pull_request": {}, "workflow_dispatch": {}},
        "permissions": {"contents": "read"},
        "concurrency": {"group": "envkit-${{ github.ref }}", "cancel-in-progress": True},
        "jobs": {
            "validate": {
                "name": "validate: every variant rendered and linted, every lock current",
                "runs-on": RUNNER,
                "timeout-minutes": 30,
                "steps": [*setup,
                          {"name": "render, lint, locks current (offline)",
                           "run": f"envkit validate {each}"},
                          {"name": "resolve every pip step for its Python (PyPI)",
                           "run": f"envkit validate --resolve --quiet {each}"}],
            },
            "build": {
                "name": "build and verify ${{ matrix.recipe }}",
                "needs": "validate",
                "runs-on": RUNNER,
                "timeout-minutes": 180,
                "strategy": {"fail-fast": False, "matrix": {"recipe": list(recipes)}},
                "steps": [*setup,
                          {"name": "build the image and run its checks in it",
                           "env": {"RECIPE": "${{ matrix.recipe }}"},
                           "run": 'envkit build --recipe "$RECIPE"'}],
            },
        },
    }
    head = (f"# Written by `invoke ci` (envkit {__version__}): validate, resolve, then build "
            "and verify each recipe.\n# `invoke ci` writes it again from the recipes; "
            "edits of your own are replaced.\n")
    return head + yaml.safe_dump(flow, sort_keys=False, width=100, allow_unicode=True)
