"""The JSON Schema shipped for editors is the one the loader uses, and it is valid."""

from __future__ import annotations

import json

import jsonschema
import yaml

from conftest import REPO
from envkit.checks import CHECKS
from envkit.load import schema
from envkit.load.catalog import Catalog
from envkit.steps import REGISTRY


def test_shipped_schema_is_current() -> None:
    assert schema.shipped_schema_path().read_text() == schema.schema_text()


def test_schema_is_valid_draft_2020_12() -> None:
    jsonschema.Draft202012Validator.check_schema(schema.recipe_schema())


def test_every_kind_is_in_the_schema() -> None:
    s = schema.recipe_schema()["properties"]
    assert set(s["steps"]["items"]["properties"]) == {"name", "when", "secrets", *REGISTRY}
    assert set(s["verify"]["items"]["properties"]) == {"name", "when", *CHECKS}


def test_catalog_validates_against_the_shipped_file_alone() -> None:
    """What an editor does with the file: plain jsonschema, no envkit code."""
    shipped = json.loads(schema.shipped_schema_path().read_text())
    validator = jsonschema.Draft202012Validator(shipped)
    for path in Catalog(REPO / "recipes").all():
        errors = list(validator.iter_errors(yaml.safe_load(path.read_text())))
        assert errors == [], (path.name, [e.message for e in errors])
