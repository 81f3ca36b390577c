"""What step kinds and check kinds share: a schema fragment and a short form.

A kind's value is a mapping of its fields, or, where the kind names a
``shorthand`` field, just that field's value (``apt: [git]``).
"""

from __future__ import annotations

from typing import Any, ClassVar

from envkit.diagnostics import Path_


class Unit:
    kind: ClassVar[str]
    summary: ClassVar[str] = ""
    properties: ClassVar[dict[str, Any]]
    required: ClassVar[tuple[str, ...]] = ()
    shorthand: ClassVar[str | None] = None
    shell_fields: ClassVar[tuple[str, ...]] = ()  # bash code: params there must be inert
    env_fields: ClassVar[tuple[str, ...]] = ()  # env values: a '$' in a param is literal
    verbatim_fields: ClassVar[tuple[str, ...]] = ()  # numbers there keep their written form

    @classmethod
    def schema(cls) -> dict[str, Any]:
        full: dict[str, Any] = {"type": "object", "properties": cls.properties,
                                "additionalProperties": False}
        if cls.summary:
            full["description"] = cls.summary
        if cls.required:
            full["required"] = list(cls.required)
        if cls.shorthand:
            return {"description": cls.summary,
                    "anyOf": [cls.properties[cls.shorthand], full]}
        return full

    @classmethod
    def normalize(cls, value: Any) -> dict[str, Any]:
        if cls.shorthand and not isinstance(value, dict):
            return {cls.shorthand: value}
        return dict(value)

    @classmethod
    def field_path(cls, value: Any, name: str) -> Path_:
        """Where field ``name`` sits in the user's own spelling (short form or mapping)."""
        if cls.shorthand and not isinstance(value, dict) and name == cls.shorthand:
            return ()
        return (name,)
