"""Load: recipe YAML into a typed model with source positions (yamlsrc, schema, model), the
catalog that finds recipes, the compatibility table, and the importers that write a recipe
from a project's own files."""
