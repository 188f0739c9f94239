"""Response models built from the services' view dataclasses, so a field added to a view reaches the API (and
its schema) without a second list of fields to keep in step."""

from __future__ import annotations

from typing import Any, get_type_hints

from pydantic import BaseModel, create_model


def model_of(name: str, view: type, exclude: tuple[str, ...] = (), **extra: Any) -> type[BaseModel]:
    """A model with every field of `view` but `exclude`, plus `extra` (`name=(type, default or Field)`)."""
    fields: dict[str, Any] = {field: (hint, ...) for field, hint in get_type_hints(view).items() if field not in exclude}
    return create_model(name, **fields, **extra)
