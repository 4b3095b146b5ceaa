"""Checks a tool call's arguments against the tool's JSON Schema before anyone acts on them.

Language models invent values: a wrong enum member, a missing required field, a number given as a
word. A voice agent that passes those on books the wrong appointment, so every call is checked with
a maintained validator (``jsonschema``) and the first violation is described in words the model can
act on when it is asked to correct the call.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from jsonschema import Draft202012Validator, ValidationError
from jsonschema.exceptions import SchemaError
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for


class SchemaProblem(ValueError):
    """A tool's ``parameters`` is not a valid JSON Schema."""


def check_schema(schema: dict[str, Any]) -> None:
    """Raise :class:`SchemaProblem` when ``schema`` is not a usable JSON Schema."""
    try:
        _validator(json.dumps(schema, sort_keys=True))
    except SchemaError as exc:
        raise SchemaProblem(_where(exc.absolute_path) + exc.message) from None


@lru_cache(maxsize=512)
def _validator(schema_json: str) -> Validator:
    schema = json.loads(schema_json)
    cls = validator_for(schema, default=Draft202012Validator)
    cls.check_schema(schema)
    validator: Validator = cls(schema)
    return validator


def violation(schema: dict[str, Any], arguments: str) -> str | None:
    """What is wrong with ``arguments`` (a JSON string) for ``schema``, or None when they fit.

    An empty schema (a tool without parameters) accepts any JSON object.
    """
    try:
        value = json.loads(arguments) if arguments.strip() else {}
    except json.JSONDecodeError as exc:
        return f"the arguments are not valid JSON ({exc.msg} at character {exc.pos})"
    if not isinstance(value, dict):
        return f"the arguments must be a JSON object, not {type(value).__name__}"
    if not schema:
        return None
    try:
        validator = _validator(json.dumps(schema, sort_keys=True))
    except SchemaError as exc:
        return f"the tool's schema is invalid: {exc.message}"
    errors = sorted(validator.iter_errors(value), key=lambda e: (len(e.absolute_path), e.message))
    if not errors:
        return None
    return "; ".join(_describe(error) for error in errors[:3])


def _describe(error: ValidationError) -> str:
    return _where(error.absolute_path) + str(error.message)


def _where(path: Any) -> str:
    parts = [f"[{p}]" if isinstance(p, int) else f".{p}" for p in path]
    return f"at '{''.join(parts).lstrip('.')}': " if parts else ""
