"""What ``@cache.cached(...)`` decides once per function, for both colours: no I/O.

A decorated function is analysed when it is decorated (:func:`analyze`): its kind (function,
method, classmethod, staticmethod), the name its default keys start with, whether its first
parameter (``self`` / ``cls``) is left out of them. :func:`key_builder` turns that into the
function that makes the key of a call, and :class:`ReturnType` into the type its values are
decoded into from L2.

Default keys are ``{module}.{qualname}:{arguments}``, the arguments bound as the function
binds them (defaults applied, so ``f(1)``, ``f(x=1)`` and ``f(1, y=<its default>)`` are one
key) and encoded by :func:`encode_argument`: typed (``1``, ``"1"``, ``1.0`` and ``True`` are
four keys), canonical (dicts and sets in a fixed order, keyword order irrelevant) and the same
in every process (never ``hash()``). A key longer than :data:`MAX_READABLE_KEY` characters
keeps its ``{module}.{qualname}:`` head and replaces the arguments by ``#`` and a 128-bit
BLAKE2b digest of them, so it stays far within the 1024-byte limit of cache keys.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import inspect
import string
import types
import typing
import uuid
from collections.abc import Callable
from decimal import Decimal
from json.encoder import encode_basestring_ascii
from typing import Any, Final

from dataferry._errors import ConfigurationError, InvalidKeyError
from dataferry._options import NOT_GIVEN, Entry

__all__ = [
    "MAX_READABLE_KEY",
    "ReturnType",
    "Target",
    "analyze",
    "check_key_option",
    "encode_argument",
    "key_builder",
]

#: Longest default key (in characters) that keeps its arguments readable; longer ones are
#: ``{module}.{qualname}:#`` + 32 hex digits of a BLAKE2b-128 digest of the arguments.
MAX_READABLE_KEY: Final = 256
#: Deepest nesting of containers in one argument (deeper, or a cycle: InvalidKeyError).
MAX_DEPTH: Final = 32
#: What default keys accept, for error messages.
SUPPORTED: Final = (
    "None, bool, int, float, str, bytes, Decimal, UUID, datetime, date, time, timedelta, enums, "
    "classes, and tuples, lists, dicts, sets and frozensets of these"
)
#: The hook an object can define to be part of default keys: ``__dataferry_key__() -> str``.
HOOK: Final = "__dataferry_key__"

Args = tuple[Any, ...]
KeyMaker = Callable[[Args, dict[str, Any]], str]

_EMPTY = inspect.Parameter.empty
_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
_VARIADIC = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


# -- argument encoding ------------------------------------------------------------------------


class _Unkeyable(Exception):
    """An argument (or a part of one) that default keys can't encode; ``str()`` says what."""


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _none(value: Any) -> str:
    return "None"


def _bytearray(value: Any) -> str:
    return f"bytearray({bytes.__repr__(bytes(value))})"


def _uuid(value: Any) -> str:
    return f"UUID({value.hex})"


def _datetime(value: Any) -> str:
    return f"datetime({dt.datetime.isoformat(value)})"


def _date(value: Any) -> str:
    return f"date({dt.date.isoformat(value)})"


def _time(value: Any) -> str:
    return f"time({dt.time.isoformat(value)})"


def _timedelta(value: Any) -> str:
    return f"timedelta({value.days},{value.seconds},{value.microseconds})"


def _decimal(value: Any) -> str:
    return f"Decimal({Decimal.__str__(value)})"


# Exact types whose encoding needs no recursion. Every encoding is unambiguous within a key:
# strings are JSON-quoted (ASCII, so a key's length in characters is its length in bytes),
# floats always show a '.', an exponent, 'inf' or 'nan', other types are tagged.
_BASES: dict[type, Callable[[Any], str]] = {
    type(None): _none,
    bool: bool.__repr__,
    int: int.__repr__,
    float: float.__repr__,
    str: encode_basestring_ascii,
    bytes: bytes.__repr__,
    bytearray: _bytearray,
    uuid.UUID: _uuid,
    dt.datetime: _datetime,
    dt.date: _date,
    dt.time: _time,
    dt.timedelta: _timedelta,
    Decimal: _decimal,
}
# For values of exactly these types, builtin repr() is their own __repr__, and faster. (A
# subclass is encoded with its base's method from _BASES: its own repr could be anything.)
_ATOMS: dict[type, Callable[[Any], str]] = {
    **_BASES,
    int: repr,
    float: repr,
    bool: repr,
    bytes: repr,
}


def _tuple(value: Any, depth: int) -> str:
    body = ",".join([_encode(v, depth) for v in value])
    return f"({body},)" if len(value) == 1 else f"({body})"


def _list(value: Any, depth: int) -> str:
    return "[" + ",".join([_encode(v, depth) for v in value]) + "]"


def _dict(value: Any, depth: int) -> str:
    # Sorted by encoded key (unique: equal keys can't both be in a dict), so insertion order
    # and keyword order don't matter.
    items = sorted([(_encode(k, depth), _encode(v, depth)) for k, v in value.items()])
    return "{" + ",".join([f"{k}:{v}" for k, v in items]) + "}"


def _set(value: Any, depth: int) -> str:
    if not value:
        return "set()"
    return "{" + ",".join(sorted([_encode(v, depth) for v in value])) + "}"


def _frozenset(value: Any, depth: int) -> str:
    return "frozenset({" + ",".join(sorted([_encode(v, depth) for v in value])) + "})"


_CONTAINERS: dict[type, Callable[[Any, int], str]] = {
    tuple: _tuple,
    list: _list,
    dict: _dict,
    set: _set,
    frozenset: _frozenset,
}


def _encode(value: Any, depth: int) -> str:
    cls = value.__class__
    atom = _ATOMS.get(cls)
    if atom is not None:
        return atom(value)
    if depth >= MAX_DEPTH:
        raise _Unkeyable(f"containers nested deeper than {MAX_DEPTH} levels (or a cycle)")
    container = _CONTAINERS.get(cls)
    if container is not None:
        return container(value, depth + 1)
    return _other(value, depth + 1)


def _other(value: Any, depth: int) -> str:
    cls = value.__class__
    if isinstance(value, type):
        return f"type({_qualified(value)})"
    hook = getattr(cls, HOOK, None)
    if hook is not None:
        key = value.__dataferry_key__()
        if not isinstance(key, str):
            raise _Unkeyable(
                f"{_qualified(cls)}.{HOOK}() must return a str, got {type(key).__name__}"
            )
        return f"{_qualified(cls)}({encode_basestring_ascii(key)})"
    if isinstance(value, enum.Enum):
        return f"{_qualified(cls)}.{value.name}"
    # A subclass of a supported type (a NamedTuple, a str subclass...): encoded as its base,
    # tagged with its own class, so it never shares a key with the plain value.
    for base in cls.__mro__[1:]:
        atom = _BASES.get(base)
        if atom is not None:
            return f"{_qualified(cls)}({atom(value)})"
        container = _CONTAINERS.get(base)
        if container is not None:
            return f"{_qualified(cls)}({container(value, depth)})"
    raise _Unkeyable(f"a {_qualified(cls)} is not keyable")


def encode_argument(value: Any) -> str:
    """Return the canonical, typed encoding of one argument in default keys.

    Raises:
        InvalidKeyError: ``value`` (or something it holds) is of a type default keys don't
            support (see :data:`SUPPORTED`; an object may define ``__dataferry_key__()``).

    """
    try:
        return _encode(value, 0)
    except _Unkeyable as exc:
        raise InvalidKeyError(f"{exc}; default cache keys support {SUPPORTED}") from None
    except ValueError as exc:  # an int of more than sys.get_int_max_str_digits() digits
        raise InvalidKeyError(f"argument can't be part of a cache key: {exc}") from None


# -- the decorated function -------------------------------------------------------------------


class Target:
    """A function as ``@cached`` sees it, analysed once when it is decorated.

    Attributes:
        fn: The function itself (unwrapped from ``classmethod`` / ``staticmethod``).
        kind: ``"function"``, ``"method"`` (defined in a class body: binds its instance),
            ``"classmethod"`` (binds its class) or ``"staticmethod"`` (binds nothing).
        label: ``{module}.{qualname}`` (the head of default keys), or a repr for messages.
        signature: ``inspect.signature(fn)``.
        skip_first: Default keys leave out the first parameter (``self`` / ``cls``).

    """

    __slots__ = ("fn", "kind", "label", "named", "signature", "skip_first")

    def __init__(
        self,
        fn: Callable[..., Any],
        kind: str,
        label: str,
        named: bool,
        signature: inspect.Signature,
        skip_first: bool,
    ) -> None:
        self.fn = fn
        self.kind = kind
        self.label = label
        #: Whether ``label`` is a real ``module.qualname`` (default keys need one).
        self.named = named
        self.signature = signature
        self.skip_first = skip_first


def _in_class_body(qualname: str) -> bool:
    # "Repo.get" and "f.<locals>.Repo.get" are defined in a class; "f.<locals>.g" and "g" not.
    parts = qualname.split(".")
    return len(parts) >= 2 and parts[-2] != "<locals>"


def analyze(fn: Any, include_self: bool) -> Target:
    """Analyse a function about to be decorated.

    Raises:
        ConfigurationError: Not a function, a generator or async generator function, a
            signature that can't be read, or ``include_self=True`` without a ``self`` /
            ``cls`` parameter.

    """
    kind = "function"
    if isinstance(fn, classmethod):
        fn, kind = fn.__func__, "classmethod"
    elif isinstance(fn, staticmethod):
        fn, kind = fn.__func__, "staticmethod"
    if not callable(fn) or isinstance(fn, type):
        raise ConfigurationError(f"@cached decorates functions and methods, got {fn!r}")
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    named = isinstance(module, str) and isinstance(qualname, str)
    label = f"{module}.{qualname}" if named else repr(fn)
    if inspect.isasyncgenfunction(fn) or inspect.isgeneratorfunction(fn):
        raise ConfigurationError(
            f"@cached can't cache {label}: it is a generator function (its results are "
            "consumed once); cache a function that returns a list instead"
        )
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError) as exc:
        raise ConfigurationError(f"@cached can't read the signature of {label}: {exc}") from None
    params = list(signature.parameters.values())
    first = params[0] if params and params[0].kind in _POSITIONAL else None
    if kind == "function" and isinstance(qualname, str) and _in_class_body(qualname):
        kind = "method"
    if kind == "classmethod" and first is None:
        raise ConfigurationError(f"@cached: the classmethod {label} has no cls parameter")
    has_self = kind == "classmethod" or (
        kind == "method" and first is not None and first.name in ("self", "cls")
    )
    if not isinstance(include_self, bool):
        raise ConfigurationError(f"include_self must be a bool, got {include_self!r}")
    if include_self and not has_self:
        raise ConfigurationError(
            f"include_self=True, but {label} has no self or cls parameter (a function "
            "defined in a class, whose first parameter is named self or cls)"
        )
    if named and len(label.encode("utf-8", "surrogatepass")) > 900:
        raise ConfigurationError(f"the qualified name of {label[:64]}... is too long; pass key=")
    return Target(fn, kind, label, named, signature, has_self and not include_self)


# -- binding ----------------------------------------------------------------------------------


def _binder(signature: inspect.Signature) -> Callable[[Args, dict[str, Any]], Args]:
    """``bind(args, kwargs)``: every parameter's value in order, defaults applied.

    Wrong arguments raise the ``TypeError`` the function itself would. Signatures without
    ``*args`` / ``**kwargs`` are bound without ``inspect`` (it costs microseconds a call).
    """
    params = list(signature.parameters.values())

    def slow(args: Args, kwargs: dict[str, Any]) -> Args:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return tuple(bound.arguments.values())

    if any(p.kind in _VARIADIC for p in params):
        return slow
    n = len(params)
    npos = sum(1 for p in params if p.kind in _POSITIONAL)
    names = tuple(p.name for p in params)
    defaults = tuple(p.default for p in params)
    by_keyword = tuple(p.kind is not inspect.Parameter.POSITIONAL_ONLY for p in params)
    # tails[m]: the defaults of the parameters after m positional arguments (None: one of
    # them is required).
    tails: list[Args | None] = [
        None if any(d is _EMPTY for d in defaults[m:]) else defaults[m:] for m in range(n + 1)
    ]

    def bind(args: Args, kwargs: dict[str, Any]) -> Args:
        m = len(args)
        if m > npos:
            return slow(args, kwargs)
        if not kwargs:
            tail = tails[m]
            if tail is None:
                return slow(args, kwargs)
            return args + tail if tail else args
        values = list(args)
        used = 0
        for i in range(m, n):
            name = names[i]
            if by_keyword[i] and name in kwargs:
                values.append(kwargs[name])
                used += 1
            elif defaults[i] is _EMPTY:
                return slow(args, kwargs)  # a required argument is missing: TypeError
            else:
                values.append(defaults[i])
        if used != len(kwargs):
            return slow(args, kwargs)  # an unexpected or repeated keyword: TypeError
        return tuple(values)

    return bind


# -- key builders -----------------------------------------------------------------------------


def check_key_option(key: object) -> None:
    """Validate ``key=`` itself: None, a non-empty template str, or a callable."""
    if key is None or callable(key):
        return
    if not isinstance(key, str):
        raise ConfigurationError(
            f"key must be a template str (like 'user:{{uid}}') or a callable returning the "
            f"key, got {key!r}"
        )
    if not key:
        raise ConfigurationError("key must not be empty")
    _template_fields(key)


def _template_fields(template: str) -> list[str]:
    """The root names of a template's fields (``{user.id}`` -> ``user``)."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ConfigurationError(f"key template {template!r} is malformed: {exc}") from None
    roots = []
    for _, field, _, _ in parsed:
        if field is None:
            continue
        root = field.split(".", 1)[0].split("[", 1)[0]
        if not root or root.isdigit():
            raise ConfigurationError(
                f"key template {template!r}: fields must name parameters, like {{uid}} "
                "(positional fields {} / {0} are not allowed)"
            )
        roots.append(root)
    return roots


def _hashed(head: str, arguments: str) -> str:
    digest = hashlib.blake2b(arguments.encode("utf-8", "surrogatepass"), digest_size=16)
    return f"{head}#{digest.hexdigest()}"


def key_builder(target: Target, key: Any, prefix: str = "") -> KeyMaker:
    """Return ``make(args, kwargs) -> prefix + key`` for calls of ``target``.

    ``key`` is the ``key=`` option. ``prefix`` (the storage-key prefix of a cache) lets the
    L1 hit path build the storage key in one go.

    Raises:
        ConfigurationError: A template field that names no parameter; no ``key=`` for a
            callable without a qualified name.

    """
    if key is None:
        return _default_key(target, prefix)
    make = _template_key(target, key) if isinstance(key, str) else _callable_key(target, key)
    if not prefix:
        return make

    def prefixed(args: Args, kwargs: dict[str, Any]) -> str:
        return prefix + make(args, kwargs)

    return prefixed


def _default_key(target: Target, prefix: str) -> KeyMaker:
    if not target.named:
        raise ConfigurationError(
            f"@cached: {target.label} has no __module__ / __qualname__ to build default keys "
            "from; pass key="
        )
    label = target.label
    head = label + ":"
    full = prefix + head
    room = MAX_READABLE_KEY - len(head)
    params = list(target.signature.parameters.values())
    names = tuple(p.name for p in params)
    n = len(params)
    skip = 1 if target.skip_first else 0
    bind = _binder(target.signature)
    # Calls that pass every parameter positionally need no binding at all.
    exact = n if all(p.kind in _POSITIONAL for p in params) else -1
    atoms = _ATOMS
    quote = encode_basestring_ascii

    def unkeyable(values: Args) -> InvalidKeyError:
        for i in range(skip, len(values)):
            try:
                _encode(values[i], 0)
            except _Unkeyable as exc:
                what = f"{names[i]!r} (a {_qualified(type(values[i]))})"
                return InvalidKeyError(
                    f"argument {what} of {label} can't be part of a cache key: {exc}. "
                    f"Default keys support {SUPPORTED}; pass key= (a template like "
                    f"'item:{{id}}' or a callable), or give the class a {HOOK}() method "
                    "returning a str"
                )
            except ValueError as exc:
                return InvalidKeyError(f"argument {names[i]!r} of {label}: {exc}")
        return InvalidKeyError(f"the arguments of {label} can't be part of a cache key")

    if n - skip == 1 and exact == n:
        # The common shape, f(x) or a method m(self, x): one value, no join; ints and strs
        # (most keys) without a table lookup.

        def make_one(args: Args, kwargs: dict[str, Any]) -> str:
            if kwargs or len(args) != exact:
                args = bind(args, kwargs)
            value = args[skip]
            cls = value.__class__
            try:
                if cls is int:
                    text = repr(value)
                elif cls is str:
                    text = quote(value)
                else:
                    atom = atoms.get(cls)
                    text = atom(value) if atom is not None else _encode(value, 0)
            except (_Unkeyable, ValueError):
                raise unkeyable(args) from None
            if len(text) <= room:
                return full + text
            return prefix + _hashed(head, text)

        return make_one

    def make(args: Args, kwargs: dict[str, Any]) -> str:
        if kwargs or len(args) != exact:
            args = bind(args, kwargs)
        try:
            text = ",".join(
                [
                    atom(v) if (atom := atoms.get(v.__class__)) is not None else _encode(v, 0)
                    for v in args[skip:]
                ]
            )
        except (_Unkeyable, ValueError):
            raise unkeyable(args) from None
        if len(text) <= room:
            return full + text
        return prefix + _hashed(head, text)

    return make


def _template_key(target: Target, template: str) -> KeyMaker:
    names = tuple(target.signature.parameters)
    for root in _template_fields(template):
        if root not in names:
            raise ConfigurationError(
                f"key template {template!r} names {{{root}}}, which is not a parameter of "
                f"{target.label} (its parameters: {', '.join(names) or 'none'})"
            )
    bind = _binder(target.signature)
    label = target.label

    def make(args: Args, kwargs: dict[str, Any]) -> str:
        values = bind(args, kwargs)
        try:
            return template.format_map(dict(zip(names, values, strict=True)))
        except Exception as exc:
            raise InvalidKeyError(
                f"key template {template!r} of {label} failed for this call: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    return make


def _callable_key(target: Target, key: Callable[..., Any]) -> KeyMaker:
    label = target.label

    def make(args: Args, kwargs: dict[str, Any]) -> str:
        made = key(*args, **kwargs)
        if made.__class__ is not str:
            if not isinstance(made, str):
                raise InvalidKeyError(
                    f"the key= callable of {label} must return a str, got "
                    f"{type(made).__name__}: {made!r:.100}"
                )
            made = str.__str__(made)
        return made

    return make


# -- the type of the values -------------------------------------------------------------------


_UNTYPED: Final = (Any, object, None, type(None), typing.NoReturn)


def _has_type_var(tp: Any) -> bool:
    if isinstance(tp, (typing.TypeVar, typing.ParamSpec)):
        return True
    return any(_has_type_var(arg) for arg in typing.get_args(tp))


def _unwrap(tp: Any) -> Any:
    """The type values are decoded into for a return annotation ``tp`` (None: untyped)."""
    if typing.get_origin(tp) is Entry:  # adaptive caching: the value is the Entry's
        args = typing.get_args(tp)
        tp = args[0] if args else None
    if any(tp is u for u in _UNTYPED) or _has_type_var(tp):
        return None  # nothing to decode into (a TypeVar: only the caller knows)
    return tp


def _shallow(tp: Any) -> tuple[type, ...] | None:
    """Classes an L1 value of type ``tp`` is an instance of, for the hit path (None: trust).

    ``list[User]`` -> ``(list,)``, ``User | None`` -> ``(User, NoneType)``. A value that
    fails the check (e.g. a dict where a dataclass is expected: a read without ``type=``
    filled L1) is converted by the cache as an L2 read would be.
    """
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        parts = [_shallow(arg) for arg in typing.get_args(tp)]
        if any(p is None for p in parts):
            return None
        return tuple(cls for p in parts if p is not None for cls in p)
    if origin is not None:
        tp = origin
    if tp is None or tp is type(None):
        return (type(None),)
    if not isinstance(tp, type):
        return None  # Literal, NewType...: not checked on hits
    if typing.is_typeddict(tp):
        return (dict,)
    if tp is float:
        return (float, int)  # an int is a float to type checkers (PEP 484)
    try:
        isinstance(None, tp)
    except TypeError:  # a Protocol that isn't runtime-checkable...
        return None
    return (tp,)


class ReturnType:
    """The type a decorated function's values are decoded into from L2.

    From ``type=`` when given (None: untyped), else from the return annotation (for an
    ``async def``, the awaited type; ``Entry[T]`` gives ``T``). ``Any``, ``object``, ``None``,
    a missing annotation or one with a TypeVar: untyped. An annotation that names something
    not defined yet (a forward reference to a class defined later) is resolved at the first
    call instead (:attr:`pending`).

    Attributes:
        tp: The type (None: untyped), passed as ``type=`` to the cache.
        check: Classes an L1 hit must be an instance of (None: any value).
        pending: Not resolved yet: call :meth:`resolve` first.

    """

    __slots__ = ("_check_type", "_fn", "_label", "_override", "check", "pending", "tp")

    def __init__(
        self,
        fn: Callable[..., Any],
        override: Any,
        check_type: Callable[[Any], None],
        label: str,
    ) -> None:
        self._fn = fn
        self._override = override
        self._check_type = check_type
        self._label = label
        self.tp: Any = None
        self.check: tuple[type, ...] | None = None
        self.pending = True
        self._resolve(lenient=True)

    def resolve(self) -> None:
        """Resolve a pending annotation now (ConfigurationError if it still can't be)."""
        self._resolve(lenient=False)

    def _resolve(self, *, lenient: bool) -> None:
        if self._override is not NOT_GIVEN:
            tp = self._override
            where = "type="
        else:
            try:
                tp = self._annotation()
            except NameError as exc:
                if lenient:
                    return  # a forward reference: try again at the first call
                raise ConfigurationError(
                    f"@cached: the return annotation of {self._label} can't be resolved "
                    f"({exc}); pass type= (or type=None for untyped values)"
                ) from None
            where = "the return annotation"
        tp = _unwrap(tp)
        if tp is not None:
            try:
                self._check_type(tp)
            except ConfigurationError as exc:
                raise ConfigurationError(
                    f"@cached: {where} of {self._label}, {tp!r}, can't be decoded from L2: "
                    f"{exc}. Pass type=None to cache untyped values, or another type="
                ) from None
        self.tp = tp
        self.check = None if tp is None else _shallow(tp)
        self.pending = False

    def _annotation(self) -> Any:
        fn = self._fn
        if not (inspect.isfunction(fn) or inspect.ismethod(fn)):
            return None  # a callable object or a partial: untyped unless type= is given
        try:
            return typing.get_type_hints(fn).get("return")
        except NameError:
            raise
        except Exception as exc:
            raise ConfigurationError(
                f"@cached: the annotations of {self._label} can't be read ({exc}); pass type="
            ) from None
