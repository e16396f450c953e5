"""Typed decoding: build (once per type) a function turning stored bytes into a declared type.

pydantic and msgspec are optional and only imported when a type needs them. The choice, per
type: a pydantic model uses pydantic; anything msgspec understands (dataclasses, Structs,
``list[User]``, ``datetime``, ``UUID``, ``Decimal``..., with pydantic models nested anywhere)
uses msgspec; anything else that
pydantic understands uses a pydantic ``TypeAdapter``; without
either library, a dataclass is built from the decoded dict, and other types get the plain value.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["typed_decoder"]

Loader = Callable[[bytes], Any]
Converter = Callable[[Any], Any]

# Per-format cache of built decoders. Types in a program are few, so the bound only guards
# against code that makes new types at run time; clearing is cheap (decoders are rebuilt).
_MAX_CACHED = 512
_cache: dict[tuple[str, Any], Loader] = {}


def _is_pydantic_model(tp: Any) -> bool:
    pydantic = sys.modules.get("pydantic")  # a model class can't exist before pydantic is imported
    return pydantic is not None and isinstance(tp, type) and issubclass(tp, pydantic.BaseModel)


def _dec_hook(tp: Any, obj: Any) -> Any:
    # msgspec calls this for classes it doesn't know, e.g. pydantic models inside list[...] or
    # in a dataclass field.
    if _is_pydantic_model(tp):
        return tp.model_validate(obj)
    raise NotImplementedError(f"cannot decode into {tp!r}")


def _msgspec_decoder(fmt: str, tp: Any) -> Loader | None:
    try:
        import msgspec
    except ImportError:  # pragma: no cover - msgspec is installed in the test environment
        return None
    module = msgspec.json if fmt == "json" else msgspec.msgpack
    try:
        return module.Decoder(tp, dec_hook=_dec_hook).decode  # type: ignore[no-any-return]
    except TypeError:  # a type msgspec does not support (e.g. containing pydantic models)
        return None


def _pydantic_loader(fmt: str, tp: Any, untyped: Loader) -> Loader | None:
    try:
        import pydantic
    except ImportError:  # pragma: no cover - pydantic is installed in the test environment
        return None
    try:
        adapter: Any = pydantic.TypeAdapter(tp)
    except Exception:  # pydantic raises several kinds for unsupported types
        return None
    if fmt == "json":
        return adapter.validate_json  # type: ignore[no-any-return]
    validate = adapter.validate_python
    return lambda data: validate(untyped(data))


def _build(fmt: str, tp: Any, untyped: Loader) -> Loader:
    if tp is Any or tp is object:
        return untyped
    if _is_pydantic_model(tp):
        if fmt == "json":
            return tp.model_validate_json  # type: ignore[no-any-return]
        validate = tp.model_validate
        return lambda data: validate(untyped(data))
    loader = _msgspec_decoder(fmt, tp) or _pydantic_loader(fmt, tp, untyped)
    if loader is not None:
        return loader
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):  # pragma: no cover - no libraries
        cls = tp
        return lambda data: cls(**untyped(data))
    return untyped  # pragma: no cover - only without msgspec and pydantic


def typed_decoder(fmt: str, tp: Any, untyped: Loader) -> Loader:
    """Return a function decoding ``fmt`` ("json" or "msgpack") bytes into ``tp``.

    ``untyped`` is the format's plain decoder (used when the type needs no conversion).
    """
    cache_key = (fmt, tp)
    try:
        loader = _cache.get(cache_key)
    except TypeError:  # an unhashable type expression: build without caching
        return _build(fmt, tp, untyped)
    if loader is None:
        loader = _build(fmt, tp, untyped)
        if len(_cache) >= _MAX_CACHED:
            _cache.clear()
        _cache[cache_key] = loader
    return loader
