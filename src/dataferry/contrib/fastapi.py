"""FastAPI integration: a lifespan, a dependency, and route response caching with validators.

Install with ``pip install 'dataferry[fastapi]'``::

    from fastapi import FastAPI
    from dataferry import AsyncDataFerry
    from dataferry.contrib.fastapi import CacheDep, cache_lifespan, cache_response

    app = FastAPI(lifespan=cache_lifespan(AsyncDataFerry.from_env()))

    @app.get("/products/{product_id}")
    @cache_response(ttl=60, tags=["product:{product_id}"])   # below the route decorator
    async def get_product(product_id: int) -> Product:
        return await db.load_product(product_id)

    @app.put("/products/{product_id}")
    async def update_product(product_id: int, product: Product, cache: CacheDep) -> Product:
        await db.save_product(product_id, product)
        await cache.remove_by_tag(f"product:{product_id}")   # every node stops serving it
        return product

- :func:`cache_lifespan` opens the cache when the application starts, stores it on
  ``app.state.dataferry`` and closes it at shutdown (composing with a lifespan of your own).
- :func:`get_cache` / :data:`CacheDep` hand a handler that cache through dependency injection
  (``app.dependency_overrides[get_cache]`` swaps it in tests).
- :func:`cache_response` caches the *rendered* response of a ``GET`` / ``HEAD`` route, so a hit
  skips the endpoint and the serialization both, and answers ``If-None-Match`` with
  ``304 Not Modified``.

How :func:`cache_response` caches a response:

- **What runs on a hit.** The route's dependencies (authentication, rate limits...) run on
  every request, hit or not: the decorator wraps the endpoint, not the route. Only the endpoint
  and the rendering of its result are skipped. Headers that dependencies set on the injected
  ``Response`` are added to every answer and never stored.
- **The key** is ``http:`` + the URL path + the query string sorted by parameter name (so
  ``?a=1&b=2`` and ``?b=2&a=1`` are one entry; repeated parameters keep their order), + the
  values of the ``vary`` request headers; or your own ``key`` instead of path and query. A
  tenant view (``cache=`` a dependency returning ``cache.tenant(...)``) keeps tenants' entries
  apart. Keys over 1000 bytes are hashed. Everything that makes two responses differ must be
  in the key: a cached response is shared by every request with that key, whoever sent it.
- **What is stored**: status, headers and body bytes of a ``200`` response, rendered as
  FastAPI renders it (``response_model`` validation and filtering, the route's
  ``response_class`` and ``status_code``, headers set by the endpoint on ``Response``), plus a
  strong ``ETag`` (a BLAKE2b hash of the body, the same in every process) unless the endpoint
  set one. Not stored, served as computed: any other status (a ``404`` may become a ``200``
  without any invalidation), an ``HTTPException``, a response with ``Set-Cookie`` or with
  ``Cache-Control: no-store`` / ``private`` (per-user content), a streamed response. Such a
  response goes to the request that computed it only; concurrent requests that waited for it
  compute their own.
- **Validators.** ``If-None-Match`` (``*``, lists, ``W/`` tags with the weak comparison of
  RFC 9110) that matches the ETag gets ``304 Not Modified`` with ``ETag``, ``Cache-Control``
  and ``Vary`` and no body, whether the response came from the cache or was just computed.
- **Cache-Control** is ``max-age=<seconds the entry stays fresh>`` (``private, ...`` with
  ``private=True``; ``no-cache``, i.e. revalidate with the ETag, when the ttl is the cache's
  default), unless ``cache_control`` gives it or the endpoint set one. A request's own
  ``Cache-Control: no-cache`` (a browser's hard reload) is *not* honoured: this cache is
  shared by every client, and letting any of them force a recomputation would let anyone
  bypass it. Invalidate on the server instead (``remove_by_tag``, ``remove``).
- Everything goes through :meth:`AsyncDataFerry.get_or_set`: concurrent requests for a cold
  URL run the endpoint once, fail-safe serves the last good response when the endpoint raises
  (with ``options=EntryOptions(fail_safe=True)``), tags and the backplane invalidate it.
  Options that let a computation outlive its request (``eager_refresh``,
  ``factory_soft_timeout``) call the endpoint after its request ended: keep them off for
  endpoints whose dependencies are request-scoped (a ``yield`` database session).
"""

from __future__ import annotations

import base64
import functools
import hashlib
import inspect
import math
import re
import string
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import timedelta
from typing import Annotated, Any, Final, TypeAlias, TypeVar, cast, overload
from urllib.parse import parse_qsl, quote, urlencode

try:
    from fastapi import Depends, Request, Response
    from fastapi.concurrency import run_in_threadpool
    from fastapi.datastructures import DefaultPlaceholder
    from fastapi.encoders import jsonable_encoder
    from fastapi.responses import JSONResponse
    from fastapi.routing import APIRoute, serialize_response
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
except ImportError as exc:  # pragma: no cover - the tests hide fastapi to check the message
    raise ImportError(
        "dataferry.contrib.fastapi needs FastAPI: pip install 'dataferry[fastapi]'"
    ) from exc

from dataferry._async._facade import AsyncDataFerry
from dataferry._errors import ConfigurationError
from dataferry._options import NOT_GIVEN, Entry, EntryOptions, seconds

__all__ = ["CacheDep", "cache_lifespan", "cache_response", "get_cache"]

AppT = TypeVar("AppT", bound=Starlette)
F = TypeVar("F", bound=Callable[..., Any])

#: The attribute of ``app.state`` that holds the cache (``app.state.dataferry``).
_STATE: Final = "dataferry"

# Names of the parameters cache_response adds to an endpoint's signature, so FastAPI injects
# the request, the response it merges headers from, and the cache. They are removed again
# before the endpoint is called.
_REQUEST: Final = "_dataferry_request"
_RESPONSE: Final = "_dataferry_response"
_CACHE: Final = "_dataferry_cache"

#: Bumped when the stored entry changes shape: an entry of another format is recomputed.
_FORMAT: Final = 1
_CACHEABLE_METHODS: Final = frozenset({"GET", "HEAD"})
#: Headers that describe one transfer, not the representation: never stored.
_NOT_STORED: Final = frozenset(
    {
        b"age",
        b"connection",
        b"content-length",
        b"date",
        b"keep-alive",
        b"proxy-connection",
        b"server",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
    }
)
#: Headers a 304 repeats from the 200 it stands for (RFC 9110, section 15.4.5).
_KEPT_BY_304: Final = frozenset(
    {b"cache-control", b"content-location", b"etag", b"expires", b"vary"}
)
_TOKEN: Final = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_ENTITY_TAG: Final = re.compile(r'(?:W/)?("[^"]*")')
_MAX_KEY_BYTES: Final = 1000


# -- lifespan and dependency ------------------------------------------------------------------


@overload
def cache_lifespan(
    cache: AsyncDataFerry | Callable[[], AsyncDataFerry], lifespan: None = None
) -> Callable[[Starlette], AbstractAsyncContextManager[None]]: ...


@overload
def cache_lifespan(
    cache: AsyncDataFerry | Callable[[], AsyncDataFerry],
    lifespan: Callable[[AppT], AbstractAsyncContextManager[None]],
) -> Callable[[AppT], AbstractAsyncContextManager[None]]: ...


@overload
def cache_lifespan(
    cache: AsyncDataFerry | Callable[[], AsyncDataFerry],
    lifespan: Callable[[AppT], AbstractAsyncContextManager[Mapping[str, Any]]],
) -> Callable[[AppT], AbstractAsyncContextManager[Mapping[str, Any]]]: ...


def cache_lifespan(
    cache: AsyncDataFerry | Callable[[], AsyncDataFerry],
    lifespan: Callable[[Any], AbstractAsyncContextManager[Any]] | None = None,
) -> Callable[[Any], AbstractAsyncContextManager[Any]]:
    """Return a lifespan that opens ``cache``, stores it on ``app.state.dataferry``, closes it.

    Use it as ``FastAPI(lifespan=cache_lifespan(cache))``. Your own lifespan goes in
    ``lifespan``: it runs inside, so its start-up can already use the cache (to warm it, say)
    and the cache closes after its shutdown; the state it yields is passed on.

    A closed cache is never reopened, so a lifespan given a cache runs once. Tests that start
    the same application several times (one ``TestClient`` per test) pass a function instead,
    ``cache_lifespan(lambda: AsyncDataFerry.from_env())``, called at each start-up.

    Args:
        cache: The cache, or a function returning a new one at each start-up.
        lifespan: Your application's own lifespan, entered inside the cache's.

    Raises:
        ConfigurationError: ``cache`` is not an AsyncDataFerry or a function, or ``lifespan``
            is not callable (a function returning something else raises at start-up).

    """
    if not isinstance(cache, AsyncDataFerry) and not callable(cache):
        raise ConfigurationError(
            f"cache_lifespan needs an AsyncDataFerry (or a function returning one), got {cache!r}"
        )
    if lifespan is not None and not callable(lifespan):
        raise ConfigurationError(f"lifespan must be a lifespan function or None, got {lifespan!r}")

    @asynccontextmanager
    async def run(app: Any) -> AsyncIterator[Any]:
        instance = cache if isinstance(cache, AsyncDataFerry) else cache()
        if not isinstance(instance, AsyncDataFerry):
            raise ConfigurationError(
                f"the cache function given to cache_lifespan returned {instance!r}, "
                "not an AsyncDataFerry"
            )
        async with instance:
            setattr(app.state, _STATE, instance)
            if lifespan is None:
                yield None
            else:
                async with lifespan(app) as state:
                    yield state

    return run


def get_cache(request: Request) -> AsyncDataFerry:
    """FastAPI dependency: the application's cache (``app.state.dataferry``).

    Declare it as ``cache: CacheDep`` (or ``Annotated[AsyncDataFerry, Depends(get_cache)]``).

    Raises:
        ConfigurationError: The application has no cache: its lifespan is not
            :func:`cache_lifespan` (or has not started).

    """
    cache = getattr(request.app.state, _STATE, None)
    if not isinstance(cache, AsyncDataFerry):
        raise ConfigurationError(
            "no DataFerry cache on app.state.dataferry: create the application with "
            "FastAPI(lifespan=cache_lifespan(cache))"
        )
    return cache


#: A handler parameter annotated ``CacheDep`` receives the application's cache.
CacheDep: TypeAlias = Annotated[AsyncDataFerry, Depends(get_cache)]


# -- response caching ---------------------------------------------------------------------------


def cache_response(
    *,
    ttl: float | timedelta | None = None,
    tags: Iterable[str] | None = None,
    vary: Iterable[str] = (),
    key: str | Callable[[Request], str] | None = None,
    cache_control: str | None = None,
    private: bool = False,
    options: EntryOptions | None = None,
    cache: Callable[..., Any] | None = None,
) -> Callable[[F], F]:
    """Cache the rendered responses of a ``GET`` / ``HEAD`` endpoint, with ETag and 304.

    Put it *below* the route decorator, so FastAPI registers the caching endpoint::

        @app.get("/products")
        @cache_response(ttl=30, tags=["products"], vary=["Accept-Language"])
        async def list_products(category: str | None = None) -> list[Product]: ...

    The endpoint keeps its signature: FastAPI still injects its parameters and runs its
    dependencies on every request (see the module's documentation for what is stored, the
    key, the validators and ``Cache-Control``). Other methods of the same endpoint pass
    through untouched.

    Args:
        ttl: Seconds (or a ``timedelta``) a response stays cached (default: the cache's).
        tags: Tags of the entry, for ``remove_by_tag``; templates formatted with the
            endpoint's arguments, e.g. ``"product:{product_id}"``.
        vary: Request headers whose values make different entries (and are listed in the
            response's ``Vary``), e.g. ``["Accept-Language"]``.
        key: Replaces the path and query string in the key: a template formatted with the
            endpoint's arguments, or a function of the request returning a str.
        cache_control: The ``Cache-Control`` header of every answer, as given.
        private: Make the derived ``Cache-Control`` ``private`` (browsers may keep the
            response, shared caches such as CDNs may not).
        options: :class:`~dataferry.EntryOptions` for the cache calls (fail-safe...).
        cache: A FastAPI dependency returning the :class:`~dataferry.AsyncDataFerry` to use,
            e.g. one returning ``cache.tenant(tenant_id)`` (default :func:`get_cache`).

    Raises:
        ConfigurationError: A bad argument, a template naming a parameter the endpoint does
            not have, or a generator endpoint (streamed responses are not cached), when the
            endpoint is decorated.

    """
    ttl_seconds = None if ttl is None else seconds("ttl", ttl, allow_zero=False)
    tag_templates = _str_list("tags", tags)
    vary_names = _header_names(vary)
    if key is not None and not isinstance(key, str) and not callable(key):
        raise ConfigurationError(f"key must be a template str, a function or None, got {key!r}")
    if cache_control is not None and (
        not isinstance(cache_control, str)
        or not cache_control.strip()
        or "\r" in cache_control
        or "\n" in cache_control
    ):
        raise ConfigurationError(
            f"cache_control must be a non-empty header value on one line, got {cache_control!r}"
        )
    if not isinstance(private, bool):
        raise ConfigurationError(f"private must be a bool, got {private!r}")
    if options is not None and not isinstance(options, EntryOptions):
        raise ConfigurationError(f"options must be EntryOptions or None, got {options!r}")
    if cache is not None and not callable(cache):
        raise ConfigurationError(f"cache must be a FastAPI dependency (a callable), got {cache!r}")
    if ttl_seconds is None and options is not None and options.ttl is not NOT_GIVEN:
        ttl_seconds = cast(float, options.ttl)  # normalized to float by EntryOptions

    def decorate(endpoint: F) -> F:
        policy = _Policy(
            endpoint,
            ttl=ttl_seconds,
            tags=tag_templates,
            vary=vary_names,
            key=key,
            cache_control=cache_control,
            private=private,
            options=options,
        )
        return cast(F, policy.wrap(get_cache if cache is None else cache))

    return decorate


def _str_list(name: str, values: Iterable[str] | None) -> tuple[str, ...]:
    if values is None:
        return ()
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        raise ConfigurationError(f"{name} must be an iterable of str, got {values!r}")
    items = tuple(values)
    for item in items:
        if not isinstance(item, str) or not item:
            raise ConfigurationError(f"{name} must hold non-empty str, got {item!r}")
    return items


def _header_names(vary: Iterable[str]) -> tuple[tuple[str, str], ...]:
    """(lowercase name, name as given) pairs, sorted and deduplicated: one key per header set."""
    names = _str_list("vary", vary)
    for name in names:
        if not _TOKEN.fullmatch(name):
            raise ConfigurationError(f"vary must hold HTTP header names, got {name!r}")
    unique = {name.lower(): name for name in names}
    return tuple(sorted(unique.items()))


def _template_fields(template: str) -> set[str]:
    """The argument names a ``str.format`` template uses (``{a.b[0]}`` uses ``a``)."""
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise ConfigurationError(f"bad template {template!r}: {exc}") from None
    fields = set()
    for _, field, _, _ in parsed:
        if field is None:
            continue
        root = re.split(r"[.\[]", field, maxsplit=1)[0]
        if not root or root.isdigit():
            raise ConfigurationError(
                f"template {template!r} must name the endpoint's parameters, not positions"
            )
        fields.add(root)
    return fields


def _signature(endpoint: Callable[..., Any]) -> inspect.Signature:
    # Annotations are resolved here, in the endpoint's module: FastAPI resolves string
    # annotations with the globals of the function it is given, which would be this module's.
    try:
        return inspect.signature(endpoint, eval_str=True)
    except (NameError, TypeError, SyntaxError):
        return inspect.signature(endpoint)


def _is_a(annotation: Any, cls: type) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, cls)


class _Policy:
    """One decorated endpoint: its settings and the request flow around it."""

    __slots__ = (
        "cache_control",
        "endpoint",
        "is_async",
        "key",
        "options",
        "private",
        "request_name",
        "response_name",
        "tags",
        "ttl",
        "vary",
    )

    def __init__(
        self,
        endpoint: Callable[..., Any],
        *,
        ttl: float | None,
        tags: tuple[str, ...],
        vary: tuple[tuple[str, str], ...],
        key: str | Callable[[Request], str] | None,
        cache_control: str | None,
        private: bool,
        options: EntryOptions | None,
    ) -> None:
        if not callable(endpoint):
            raise ConfigurationError(f"cache_response decorates an endpoint, got {endpoint!r}")
        if inspect.isgeneratorfunction(endpoint) or inspect.isasyncgenfunction(endpoint):
            raise ConfigurationError(
                f"cache_response can't cache the streamed response of {endpoint!r}"
            )
        self.endpoint = endpoint
        self.is_async = inspect.iscoroutinefunction(endpoint)
        self.ttl = ttl
        self.tags = tags
        self.vary = vary
        self.key = key
        self.cache_control = cache_control
        self.private = private
        self.options = options
        self.request_name: str | None = None
        self.response_name: str | None = None

    def wrap(self, cache_dependency: Callable[..., Any]) -> Callable[..., Any]:
        """The endpoint FastAPI registers: the endpoint's signature plus injected parameters."""
        endpoint = self.endpoint
        sig = _signature(endpoint)
        params = list(sig.parameters.values())
        names = {p.name for p in params}
        templates = [*self.tags, *([self.key] if isinstance(self.key, str) else [])]
        for template in templates:
            unknown = _template_fields(template) - names
            if unknown:
                raise ConfigurationError(
                    f"template {template!r} names {sorted(unknown)}, which "
                    f"{getattr(endpoint, '__name__', endpoint)!r} has no parameter for"
                )
        if names & {_REQUEST, _RESPONSE, _CACHE}:
            raise ConfigurationError(f"{endpoint!r} uses a parameter name reserved by DataFerry")
        # FastAPI injects one Request and one Response per endpoint (by annotation): reuse the
        # endpoint's own parameters when it declares them, else add ours.
        self.request_name = next((p.name for p in params if _is_a(p.annotation, Request)), None)
        self.response_name = next((p.name for p in params if _is_a(p.annotation, Response)), None)
        kw = inspect.Parameter.KEYWORD_ONLY
        extra = [
            inspect.Parameter(
                _CACHE, kw, annotation=Annotated[AsyncDataFerry, Depends(cache_dependency)]
            )
        ]
        if self.request_name is None:
            extra.append(inspect.Parameter(_REQUEST, kw, annotation=Request))
        if self.response_name is None:
            extra.append(inspect.Parameter(_RESPONSE, kw, annotation=Response))
        at = next(
            (i for i, p in enumerate(params) if p.kind is inspect.Parameter.VAR_KEYWORD),
            len(params),
        )
        params[at:at] = extra

        @functools.wraps(endpoint)
        async def cached_endpoint(**kwargs: Any) -> Any:
            cache = kwargs.pop(_CACHE)
            request = kwargs[self.request_name] if self.request_name else kwargs.pop(_REQUEST)
            response = kwargs[self.response_name] if self.response_name else kwargs.pop(_RESPONSE)
            if request.method not in _CACHEABLE_METHODS:
                return await self.call(kwargs)
            if not isinstance(cache, AsyncDataFerry):
                raise ConfigurationError(
                    f"the cache dependency of {endpoint!r} returned {cache!r}, "
                    "not an AsyncDataFerry"
                )
            return await self.respond(cache, request, response, kwargs)

        cached_endpoint.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
        return cached_endpoint

    async def call(self, kwargs: dict[str, Any]) -> Any:
        """Run the endpoint as FastAPI would: a sync one in the thread pool."""
        if self.is_async:
            return await self.endpoint(**kwargs)
        result = await run_in_threadpool(self.endpoint, **kwargs)
        return await result if inspect.isawaitable(result) else result

    def cache_key(self, request: Request, kwargs: dict[str, Any]) -> str:
        """``http:`` + path and sorted query (or the custom key) + the vary headers' values."""
        if self.key is None:
            # Percent-encoded path and query: neither can contain a bare '?' or '|'.
            pairs = parse_qsl(request.url.query, keep_blank_values=True)
            pairs.sort(key=lambda pair: pair[0])  # stable: repeated parameters keep their order
            resource = quote(request.url.path, safe="/")
            if pairs:
                resource += "?" + urlencode(pairs)
        elif isinstance(self.key, str):
            resource = self.key.format_map(kwargs)
        else:
            resource = self.key(request)
            if not isinstance(resource, str):
                raise ConfigurationError(f"the key function returned {resource!r}, not a str")
        key = "http:" + resource
        if self.vary:
            headers = request.headers
            values = [
                (name, ", ".join(headers.getlist(name))) for name, _ in self.vary if name in headers
            ]
            key += "|" + urlencode(values)
        if len(key.encode("utf-8", "surrogatepass")) > _MAX_KEY_BYTES:
            # "http#" never starts a readable key, so a hashed key can't equal one.
            key = "http#" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()
        return key

    async def respond(
        self, cache: AsyncDataFerry, request: Request, sub: Response, kwargs: dict[str, Any]
    ) -> Response:
        """Answer a GET/HEAD from the cache, computing (once for concurrent requests) on a miss."""
        # Headers set so far came from dependencies: they are this request's, never stored.
        dependency_headers = list(sub.raw_headers)
        own: Response | None = None
        failure: HTTPException | None = None

        async def factory() -> Any:
            nonlocal own, failure
            try:
                rendered = await self.render(await self.call(kwargs), request, sub)
            except HTTPException as exc:
                # An HTTP error is an answer, not a failure: not cached, and not a reason for
                # fail-safe to serve a stale response instead.
                failure = exc
                return Entry(None, ttl=0)
            entry = self.entry(rendered, dependency_headers)
            if entry is None:
                own = rendered
                return Entry(None, ttl=0)  # ttl=0: not cached, and any older entry removed
            own = rendered
            return entry

        tags = [template.format_map(kwargs) for template in self.tags]
        entry = await cache.get_or_set(
            self.cache_key(request, kwargs), factory, ttl=self.ttl, tags=tags, options=self.options
        )
        if isinstance(entry, dict) and entry.get("format") == _FORMAT:
            served = self.serve(entry, request, dependency_headers)
            if own is not None:  # this request ran the endpoint: its background tasks run
                served.background = own.background
            return served
        if failure is not None:
            raise failure
        if own is not None:
            return own
        # This request waited for another one whose response was not shareable (an error, a
        # Set-Cookie...): it computes its own.
        return await self.render(await self.call(kwargs), request, sub)

    async def render(self, result: Any, request: Request, sub: Response) -> Response:
        """The response FastAPI would make of the endpoint's ``result``."""
        if isinstance(result, Response):
            return result
        route = request.scope.get("route")
        status: int | None = None
        response_class: Any = JSONResponse
        if isinstance(route, APIRoute):
            # FastAPI before 0.100 validated against a clone of the response field.
            field = getattr(route, "secure_cloned_response_field", None) or route.response_field
            content = await serialize_response(
                field=field,
                response_content=result,
                include=route.response_model_include,
                exclude=route.response_model_exclude,
                by_alias=route.response_model_by_alias,
                exclude_unset=route.response_model_exclude_unset,
                exclude_defaults=route.response_model_exclude_defaults,
                exclude_none=route.response_model_exclude_none,
                is_coroutine=True,
            )
            response_class = route.response_class
            if isinstance(response_class, DefaultPlaceholder):
                response_class = response_class.value
            status = route.status_code
        else:
            content = jsonable_encoder(result)
        if sub.status_code:  # set by the endpoint or a dependency: wins, as in FastAPI
            status = sub.status_code
        response: Response = (
            response_class(content, status_code=status) if status else response_class(content)
        )
        if response.status_code < 200 or response.status_code in (204, 304):
            response.body = b""
        response.raw_headers.extend(sub.raw_headers)
        return response

    def entry(
        self, response: Response, dependency_headers: list[tuple[bytes, bytes]]
    ) -> dict[str, Any] | None:
        """What is stored of ``response``, or None when it must not be shared."""
        body = getattr(response, "body", None)
        if response.status_code != 200 or not isinstance(body, bytes):
            return None  # another status, or streamed
        headers: list[tuple[bytes, bytes]] = []
        etag = None
        for name, value in response.raw_headers:
            lname = name.lower()
            if lname == b"set-cookie":
                return None
            if lname == b"cache-control" and _directives(value) & {"no-store", "private"}:
                return None
            if lname in _NOT_STORED or (name, value) in dependency_headers:
                continue
            if lname == b"etag":
                etag = value.decode("latin-1")
            headers.append((lname, value))
        if etag is None:
            etag = '"' + hashlib.blake2b(body, digest_size=16).hexdigest() + '"'
            headers.append((b"etag", etag.encode("latin-1")))
        if self.vary:
            present = {
                token.strip().lower()
                for name, value in headers
                if name == b"vary"
                for token in value.decode("latin-1").split(",")
            }
            missing = [given for name, given in self.vary if name not in present]
            if missing:
                headers.append((b"vary", ", ".join(missing).encode("latin-1")))
        try:
            text, encoding = body.decode("utf-8"), "utf-8"
        except UnicodeDecodeError:
            text, encoding = base64.b64encode(body).decode("ascii"), "base64"
        # Only str, int, float and lists: any serializer of the cache (JSON too) stores it.
        return {
            "format": _FORMAT,
            "status": response.status_code,
            "headers": [[n.decode("latin-1"), v.decode("latin-1")] for n, v in headers],
            "body": text,
            "encoding": encoding,
            "etag": etag,
            "created": time.time(),
        }

    def serve(
        self,
        entry: Mapping[str, Any],
        request: Request,
        dependency_headers: list[tuple[bytes, bytes]],
    ) -> Response:
        """The answer to ``request`` from a stored entry: a 304 when its ETag matches."""
        headers = [(n.encode("latin-1"), v.encode("latin-1")) for n, v in entry["headers"]]
        stored_control = any(name == b"cache-control" for name, _ in headers)
        if self.cache_control is not None or not stored_control:
            headers = [(n, v) for n, v in headers if n != b"cache-control"]
            headers.append((b"cache-control", self.control(entry).encode("latin-1")))
        if _none_match(request.headers.getlist("if-none-match"), entry["etag"]):
            response = Response(status_code=304)
            response.raw_headers.extend((n, v) for n, v in headers if n in _KEPT_BY_304)
        else:
            body = entry["body"]
            content = body.encode() if entry["encoding"] == "utf-8" else base64.b64decode(body)
            response = Response(content=content, status_code=entry["status"])
            response.raw_headers.extend(headers)
        response.raw_headers.extend(dependency_headers)
        return response

    def control(self, entry: Mapping[str, Any]) -> str:
        """The ``Cache-Control`` value: as given, or ``max-age`` = the entry's remaining life."""
        if self.cache_control is not None:
            return self.cache_control
        prefix = "private, " if self.private else ""
        if self.ttl is None:
            return prefix + "no-cache"  # the cache's default ttl: revalidate with the ETag
        age = max(0.0, time.time() - float(entry["created"]))
        return f"{prefix}max-age={math.floor(max(0.0, self.ttl - age) + 0.5)}"


def _directives(value: bytes) -> set[str]:
    """The directive names of a Cache-Control value, lowercased."""
    return {part.split("=", 1)[0].strip().lower() for part in value.decode("latin-1").split(",")}


def _none_match(header_values: list[str], etag: str) -> bool:
    """Whether ``If-None-Match`` matches ``etag`` (weak comparison, RFC 9110 13.1.2)."""
    opaque = etag.removeprefix("W/")
    for value in header_values:
        if value.strip() == "*":
            return True
        if any(match.group(1) == opaque for match in _ENTITY_TAG.finditer(value)):
            return True
    return False
