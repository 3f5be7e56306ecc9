"""Environment overrides of the configuration, read by pydantic-settings' environment source.

``SPEX_MONITOR_SERVER__GRPC_PORT=50052`` sets ``server.grpc_port``; ``SPEX_MONITOR_MODELS__0__VERSION=1.10``
sets the first model's version (digit parts index lists). pydantic-settings reads the variables (prefix,
nested delimiter ``__``, any case) and decodes JSON for list and mapping fields; values stay strings for
pydantic to type by the field they set, so a token ``012345`` stays a string (YAML typing made it the octal
integer 5349). Inside list items pydantic-settings cannot see the field types, so JSON there is decoded
here, by walking the settings model.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Annotated, Any, get_args, get_origin

from pydantic import BaseModel
from pydantic_settings import EnvSettingsSource, SettingsError

ENV_PREFIX = "SPEX_MONITOR_"


class EnvValueError(ValueError):
    """An environment value that cannot apply; ``path`` names the field (``config`` reports it)."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")

    def __reduce__(self) -> tuple:
        return (type(self), (self.path, self.reason), self.__dict__)


class _Environment(EnvSettingsSource):
    """pydantic-settings' environment source over a given mapping (``os.environ`` by default)."""

    def __init__(self, settings: type[BaseModel], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(
            settings,  # type: ignore[arg-type]  # only its fields are read
            case_sensitive=False,
            env_prefix=ENV_PREFIX,
            env_nested_delimiter="__",
        )

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return {name.lower(): value for name, value in self._environ.items()}


def _complex(annotation: Any) -> bool:
    """Whether a field of this type takes JSON from the environment (lists, mappings, models)."""
    options = get_args(annotation) if get_origin(annotation) in (Annotated,) else (annotation,)
    for option in options:
        origin = get_origin(option)
        if origin in (list, dict, set, tuple) or (isinstance(option, type) and issubclass(option, BaseModel)):
            return True
        if origin is not None and any(_complex(a) for a in get_args(option) if a is not type(None)):
            return True
    return False


def _field_at(settings: type[BaseModel], path: list[str]) -> Any:
    """The annotation of the field at ``path`` (list indexes skipped), or ``None`` when unknown."""
    models: list[type[BaseModel]] = [settings]
    annotation: Any = None
    for part in path:
        if part.isdigit():
            continue
        found = [m.model_fields[part] for m in models if part in m.model_fields]
        if not found:
            return None
        annotation = found[0].annotation
        models = []
        stack = [annotation]
        while stack:
            item = stack.pop()
            if isinstance(item, type) and issubclass(item, BaseModel):
                models.append(item)
            else:
                stack.extend(get_args(item))
    return annotation


def _decode_in_lists(settings: type[BaseModel], value: Any, path: list[str]) -> Any:
    """JSON-decode list/mapping values that sit inside list items (pydantic-settings cannot see those
    fields' types: ``SPEX_MONITOR_MODELS__0__BACKEND__ENDPOINTS='["h:1"]'``)."""
    if isinstance(value, dict):
        return {k: _decode_in_lists(settings, v, [*path, k]) for k, v in value.items()}
    if isinstance(value, str) and any(p.isdigit() for p in path) and _complex(_field_at(settings, path)):
        try:
            return json.loads(value)
        except ValueError as exc:
            raise EnvValueError(".".join(path), f"expected JSON: {exc}") from exc
    return value


def _merge(base: Any, overlay: Any, path: list[str]) -> Any:
    """Overlay environment values onto the file's data; digit keys index lists (``models.0.version``)."""
    if not isinstance(overlay, dict):
        return overlay
    if isinstance(base, list) or (base is None and overlay and all(k.isdigit() for k in overlay)):
        items = list(base or [])
        for key in sorted(overlay, key=lambda k: int(k) if k.isdigit() else -1):
            if not key.isdigit() or int(key) > len(items):
                where = ".".join([*path, key])
                raise EnvValueError(where, f"no entry {key} to set (the list has {len(items)} entries)")
            index = int(key)
            if index == len(items):
                items.append({})
            items[index] = _merge(items[index], overlay[key], [*path, key])
        return items
    merged = dict(base) if isinstance(base, dict) else {}
    for key, value in overlay.items():
        merged[key] = _merge(merged.get(key), value, [*path, key])
    return merged


def overlay(settings: type[BaseModel], data: dict, environ: Mapping[str, str]) -> dict:
    """Overlay ``SPEX_MONITOR_A__B__C=value`` onto the file's data, through pydantic-settings.

    Values stay strings for pydantic to type by field (``"012345"`` is a token, ``"50052"`` a port);
    list and mapping fields take JSON.
    """
    try:
        values = _Environment(settings, environ)()
    except SettingsError as exc:  # a list or mapping field given something that is not JSON
        reason = f"{exc}; list and mapping fields take JSON"
        raise EnvValueError("<environment>", reason) from exc
    return _merge(data, _decode_in_lists(settings, values, []), [])


