"""Typed decoding: build (once per type) a function turning stored bytes into a declared type.

pydantic and msgspec are optional and only imported when a type needs them. The choice, per
type: a pydantic model uses pydantic; anything msgspec understands (dataclasses, Structs,
``list[User]``, ``datetime``, ``UUID``, ``Decimal``..., with pydantic models nested anywhere)
uses msgspec; anything else that pydantic understands uses a pydantic ``TypeAdapter``.

Without either library, only plain builtins are decoded, and checked: ``Any``, ``object``,
``None``, ``bool``, ``int``, ``float`` (ints are widened), ``str``, ``list``, ``tuple``,
``dict``, their parameterized forms (``list[int]``, ``dict[str, float]``, ``tuple[int, ...]``)
and ``X | None`` of those. Any other type raises :class:`~dataferry.ConfigurationError` naming
what to install *when the decoder is built*, i.e. at the call that asks for the type, whatever
the stored bytes: never a half-converted value (a ``str`` for a ``datetime``, a dataclass whose
nested fields are dicts).
"""

from __future__ import annotations

import sys
import types
import typing
from collections.abc import Callable
from typing import Any

from dataferry._errors import ConfigurationError

__all__ = ["typed_decoder"]

Loader = Callable[[bytes], Any]
Converter = Callable[[Any], Any]

# Per-format cache of built decoders (or of the error building one raised). Types in a program
# are few, so the bound only guards against code that makes new types at run time; clearing is
# cheap (decoders are rebuilt).
_MAX_CACHED = 512
_cache: dict[tuple[str, Any], Loader | ConfigurationError] = {}


def _is_pydantic_model(tp: Any) -> bool:
    pydantic = sys.modules.get("pydantic")  # a model class can't exist before pydantic is imported
    return pydantic is not None and isinstance(tp, type) and issubclass(tp, pydantic.BaseModel)


def _dec_hook(tp: Any, obj: Any) -> Any:
    # msgspec calls this for classes it doesn't know, e.g. pydantic models inside list[...] or
    # in a dataclass field.
    if _is_pydantic_model(tp):
        return tp.model_validate(obj)
    raise NotImplementedError(f"cannot decode into {tp!r}")


def _import(name: str) -> Any:
    try:
        return __import__(name)
    except ImportError:
        return None


def _msgspec_decoder(msgspec: Any, fmt: str, tp: Any) -> Loader | None:
    module = msgspec.json if fmt == "json" else msgspec.msgpack
    try:
        decoder = module.Decoder(tp, dec_hook=_dec_hook)
    except TypeError:  # a type msgspec does not support
        return None
    if not _msgspec_knows(msgspec, tp):
        return None
    return decoder.decode  # type: ignore[no-any-return]


def _msgspec_knows(msgspec: Any, tp: Any) -> bool:
    """Whether msgspec decodes every part of ``tp`` itself (or via our hook, pydantic models).

    msgspec accepts any class as a "custom type" handed to ``dec_hook`` at decode time, which
    would turn every read into a miss; such types go to pydantic, or are refused, now instead.
    """
    inspect = __import__("msgspec.inspect", fromlist=["_"])
    try:
        stack: list[Any] = [inspect.type_info(tp)]
    except Exception:  # pragma: no cover - the decoder was built: trust it
        return True
    seen: set[int] = set()
    while stack:
        node = stack.pop()
        if id(node) in seen:  # recursive types share nodes
            continue
        seen.add(id(node))
        if isinstance(node, inspect.CustomType):
            if not _is_pydantic_model(node.cls):
                return False
        elif isinstance(node, (tuple, list)):
            stack.extend(node)
        elif type(node).__module__ == "msgspec.inspect":  # a Type or a Field: walk its parts
            stack.extend(getattr(node, name) for name in node.__struct_fields__)
    return True


def _pydantic_loader(pydantic: Any, fmt: str, tp: Any, untyped: Loader) -> Loader | None:
    try:
        adapter: Any = pydantic.TypeAdapter(tp)
    except Exception:  # pydantic raises several kinds for unsupported types
        return None
    if fmt == "json":
        return adapter.validate_json  # type: ignore[no-any-return]
    validate = adapter.validate_python
    return lambda data: validate(untyped(data))


# -- plain builtins, with no library -------------------------------------------------------------


def _exact(tp: type) -> Converter:
    def check(value: Any) -> Any:
        if type(value) is not tp:  # bool is not an int here, as in msgspec
            raise ValueError(f"expected {tp.__name__}, got {type(value).__name__}")
        return value

    return check


def _to_float(value: Any) -> float:
    if type(value) is float:
        return value
    if type(value) is int:
        return float(value)
    raise ValueError(f"expected float, got {type(value).__name__}")


def _to_none(value: Any) -> None:
    if value is not None:
        raise ValueError(f"expected None, got {type(value).__name__}")


def _as_list(value: Any) -> list[Any]:
    if type(value) is not list:  # both formats decode arrays as lists
        raise ValueError(f"expected an array, got {type(value).__name__}")
    return value


def _builtin_converter(tp: Any) -> Converter | None:
    """Return a checking converter for a builtin type expression, or None if it isn't one."""
    if tp is Any or tp is object:
        return lambda value: value
    if tp is None or tp is type(None):
        return _to_none
    if tp in (bool, int, str):
        return _exact(tp)
    if tp is float:
        return _to_float
    if tp is list:
        return _as_list
    if tp is tuple:
        return lambda value: tuple(_as_list(value))
    if tp is dict:
        return _exact(dict)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    parts = [_builtin_converter(a) for a in args if a is not Ellipsis]
    if not args or any(c is None for c in parts):
        return None
    convs = typing.cast("list[Converter]", parts)
    if origin in (typing.Union, types.UnionType):
        if len(args) != 2 or type(None) not in args:
            return None  # X | Y: which one a value is meant to be needs msgspec's rules
        inner = convs[0] if args[0] is not type(None) else convs[1]
        return lambda value: None if value is None else inner(value)
    if origin is list and len(args) == 1:
        item = convs[0]
        return lambda value: [item(v) for v in _as_list(value)]
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        each = convs[0]
        return lambda value: tuple(each(v) for v in _as_list(value))
    if origin is tuple and Ellipsis not in args:

        def convert_tuple(value: Any) -> tuple[Any, ...]:
            seq = _as_list(value)
            if len(seq) != len(convs):
                raise ValueError(f"expected {len(convs)} items, got {len(seq)}")
            return tuple(c(v) for c, v in zip(convs, seq, strict=True))

        return convert_tuple
    if origin is dict and len(args) == 2:
        key, val = convs

        def convert_dict(value: Any) -> dict[Any, Any]:
            if type(value) is not dict:
                raise ValueError(f"expected an object, got {type(value).__name__}")
            return {key(k): val(v) for k, v in value.items()}

        return convert_dict
    return None


def _missing_library(tp: Any, msgspec: Any, pydantic: Any) -> ConfigurationError:
    name = getattr(tp, "__qualname__", None) or repr(tp)
    if msgspec is None and pydantic is None:
        return ConfigurationError(
            f"decoding into {name} needs msgspec (or pydantic), which is not installed: "
            "pip install 'dataferry[msgspec]'. Without it, only plain builtins (int, str, "
            "float, bool, list, dict, None, Any) are decoded."
        )
    if pydantic is None:
        return ConfigurationError(
            f"msgspec can't decode into {name}; pydantic may: pip install pydantic"
        )
    if msgspec is None:
        return ConfigurationError(
            f"pydantic can't decode into {name}; msgspec may: pip install 'dataferry[msgspec]'"
        )
    return ConfigurationError(f"cannot decode into {name}: neither msgspec nor pydantic can")


def _build(fmt: str, tp: Any, untyped: Loader) -> Loader:
    if tp is Any or tp is object:
        return untyped
    if _is_pydantic_model(tp):
        if fmt == "json":
            return tp.model_validate_json  # type: ignore[no-any-return]
        validate = tp.model_validate
        return lambda data: validate(untyped(data))
    msgspec, pydantic = _import("msgspec"), _import("pydantic")
    loader = None
    if msgspec is not None:
        loader = _msgspec_decoder(msgspec, fmt, tp)
    if loader is None and pydantic is not None:
        loader = _pydantic_loader(pydantic, fmt, tp, untyped)
    if loader is not None:
        return loader
    convert = _builtin_converter(tp)
    if convert is not None:
        return lambda data: convert(untyped(data))
    raise _missing_library(tp, msgspec, pydantic)


def typed_decoder(fmt: str, tp: Any, untyped: Loader) -> Loader:
    """Return a function decoding ``fmt`` ("json" or "msgpack") bytes into ``tp``.

    ``untyped`` is the format's plain decoder (used when the type needs no conversion). The
    returned function raises (any exception) on bytes that don't fit ``tp``.

    Raises:
        ConfigurationError: ``tp`` can't be decoded with the libraries installed (the message
            says what to install). Raised again, from a cache, on later calls for ``tp``.

    """
    cache_key = (fmt, tp)
    try:
        found = _cache.get(cache_key)
    except TypeError:  # an unhashable type expression: build without caching
        return _build(fmt, tp, untyped)
    if found is None:
        try:
            found = _build(fmt, tp, untyped)
        except ConfigurationError as exc:
            found = exc
        if len(_cache) >= _MAX_CACHED:
            _cache.clear()
        _cache[cache_key] = found
    if isinstance(found, ConfigurationError):
        raise ConfigurationError(*found.args)  # a fresh exception: no shared traceback
    return found
