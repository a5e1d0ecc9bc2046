"""Typed JSON documents: a frozen dataclass in and out of JSON, every field checked, every error naming it.

The settings contract between the stacks and the runtime (``aws.contract``) and a member's own federation
settings (``app.pins``) are such documents. Standard library only: the CDK app, the Flower app and the Lambda
launcher all read them.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from typing import Any, TypeVar

from fl_runtime.errors import ConfigError

DocumentT = TypeVar("DocumentT", bound="JsonDocument")


class JsonDocument:
    """JSON in and out for a frozen dataclass, checked field by field. A document with ``STRICT`` refuses fields
    it does not define (a member's own settings); others ignore them (a stack of a newer version may add some)."""

    STRICT: typing.ClassVar[bool] = False

    @classmethod
    def from_json(cls: type[DocumentT], text: str, where: str) -> DocumentT:
        """``where`` names the document (its SSM parameter or file) in every error."""
        try:
            document = json.loads(text)
        except json.JSONDecodeError as error:
            raise ConfigError(f"{where}: not JSON ({error})") from None
        return cls.from_dict(document, where)

    @classmethod
    def from_dict(cls: type[DocumentT], document: Any, where: str) -> DocumentT:
        fields = dataclasses.fields(cls)  # type: ignore[arg-type]
        if not isinstance(document, dict):
            raise ConfigError(f"{where}: expected a JSON object with the fields {', '.join(f.name for f in fields)}")
        hints = typing.get_type_hints(cls)
        unknown = sorted(set(document) - {item.name for item in fields})
        if cls.STRICT and unknown:
            raise ConfigError(f"{where}: field '{unknown[0]}' is not one of {', '.join(f.name for f in fields)}")
        values = {}
        for item in fields:
            if item.name not in document and _has_default(item):
                continue  # an optional field a writer left out takes its default
            if item.name not in document:
                raise ConfigError(f"{where}: field '{item.name}' is missing (published by a stack of another version?)")
            values[item.name] = _read(hints[item.name], document[item.name], f"{where}: field '{item.name}'")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types (tuples as lists), field by field."""
        return {item.name: _plain(getattr(self, item.name)) for item in dataclasses.fields(self)}  # type: ignore[arg-type]

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


def _has_default(item: dataclasses.Field) -> bool:
    return item.default is not dataclasses.MISSING or item.default_factory is not dataclasses.MISSING


def _plain(value: Any) -> Any:
    if isinstance(value, JsonDocument):
        return value.to_dict()
    if isinstance(value, tuple):
        return [_plain(item) for item in value]
    return value


def _read(kind: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(kind)
    if origin is tuple:
        item_kind = typing.get_args(kind)[0]
        if not isinstance(value, list):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        return tuple(_read(item_kind, item, f"{where}[{index}]") for index, item in enumerate(value))
    if isinstance(kind, type) and issubclass(kind, JsonDocument):
        return kind.from_dict(value, where)
    if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{where} must be a whole number, got {value!r}")
    if kind is str and not isinstance(value, str):
        raise ConfigError(f"{where} must be a string, got {value!r}")
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        return float(value)
    if kind is bool and not isinstance(value, bool):
        raise ConfigError(f"{where} must be true or false, got {value!r}")
    return value
