"""dataferry.contrib.fastapi: lifespan, dependency and route response caching, through ASGI.

The applications are driven by httpx's ASGI transport, which does not run lifespan events: each
test enters the application's lifespan itself (``serve``). No ``from __future__ import
annotations`` here: the endpoints are defined inside the tests and annotated with local names.
"""

import asyncio
import hashlib
import importlib
import re
import sys
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
from fastapi import Depends, FastAPI, Header, HTTPException, Request, Response
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel

import dataferry as df
from dataferry.contrib.fastapi import CacheDep, cache_lifespan, cache_response, get_cache

ETAG = re.compile(r'^"[0-9a-f]{32}"$')


@asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The app's lifespan entered, and a client talking to it in process."""
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://test") as client,
    ):
        yield client


class Calls:
    """Counts endpoint runs, by name."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def __call__(self, name: str) -> int:
        self.counts[name] = self.counts.get(name, 0) + 1
        return self.counts[name]

    def __getitem__(self, name: str) -> int:
        return self.counts.get(name, 0)


@pytest.fixture
def calls() -> Calls:
    return Calls()


@pytest.fixture
def cache() -> df.AsyncDataFerry:
    return df.AsyncDataFerry(namespace="web")


# == lifespan and dependency =======================================================================


async def test_lifespan_opens_the_cache_for_the_dependency_and_closes_it(
    cache: df.AsyncDataFerry,
) -> None:
    app = FastAPI(lifespan=cache_lifespan(cache))

    @app.get("/count")
    async def count(cache: CacheDep) -> dict[str, Any]:
        value = await cache.get_or_set("n", lambda: 41)
        return {"value": value, "same": cache is app.state.dataferry}

    async with serve(app) as client:
        assert not cache.closed
        await cache.set("n", 42)
        assert (await client.get("/count")).json() == {"value": 42, "same": True}
    assert cache.closed


async def test_dependency_without_the_lifespan_is_a_clear_error() -> None:
    app = FastAPI()

    @app.get("/")
    async def handler(cache: CacheDep) -> None: ...

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        with pytest.raises(df.ConfigurationError, match=r"lifespan=cache_lifespan\(cache\)"):
            await c.get("/")


async def test_lifespan_composes_with_the_applications_own(cache: df.AsyncDataFerry) -> None:
    seen: list[str] = []

    @asynccontextmanager
    async def own(app: FastAPI) -> AsyncIterator[Mapping[str, Any]]:
        # Inside the cache's lifespan: the cache is already usable (to warm it, say).
        await app.state.dataferry.set("greeting", "hello")
        yield {"db": "a database"}
        seen.append(f"own shutdown, cache closed: {app.state.dataferry.closed}")

    app = FastAPI(lifespan=cache_lifespan(cache, own))

    @app.get("/")
    async def handler(cache: CacheDep) -> Any:
        return await cache.get("greeting")

    # The server hands the yielded state to requests (request.state.db); httpx's transport
    # has no lifespan support, so the state is checked where the lifespan yields it.
    async with app.router.lifespan_context(app) as state:
        assert state == {"db": "a database"}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            assert (await client.get("/")).json() == "hello"
    assert seen == ["own shutdown, cache closed: False"]
    assert cache.closed


async def test_lifespan_with_a_cache_function_starts_a_new_cache_each_time() -> None:
    made: list[df.AsyncDataFerry] = []

    def new_cache() -> df.AsyncDataFerry:
        made.append(df.AsyncDataFerry())
        return made[-1]

    app = FastAPI(lifespan=cache_lifespan(new_cache))

    @app.get("/")
    async def handler(cache: CacheDep) -> int:
        return made.index(cache)

    for run in range(2):
        async with serve(app) as client:
            assert (await client.get("/")).json() == run
    assert len(made) == 2
    assert all(c.closed for c in made)


def test_lifespan_rejects_what_is_not_a_cache() -> None:
    sync_cache = df.DataFerry()
    try:
        with pytest.raises(df.ConfigurationError, match="AsyncDataFerry"):
            cache_lifespan(sync_cache)  # type: ignore[call-overload]
    finally:
        sync_cache.close()
    with pytest.raises(df.ConfigurationError, match="lifespan"):
        cache_lifespan(df.AsyncDataFerry(), 3)  # type: ignore[call-overload]


async def test_dependency_can_be_overridden_in_tests(cache: df.AsyncDataFerry) -> None:
    app = FastAPI(lifespan=cache_lifespan(cache))

    @app.get("/")
    async def handler(cache: CacheDep) -> str:
        return cache.namespace

    other = df.AsyncDataFerry(namespace="other")
    app.dependency_overrides[get_cache] = lambda: other
    async with serve(app) as client:
        assert (await client.get("/")).json() == "other"
    await other.aclose()


# == response caching ==============================================================================


class Item(BaseModel):
    id: int
    name: str


def item_app(cache: df.AsyncDataFerry, calls: Calls, **decorator: Any) -> FastAPI:
    """/items/{item_id} cached with ``decorator``'s arguments (default ttl=60, tagged)."""
    app = FastAPI(lifespan=cache_lifespan(cache))
    decorator.setdefault("ttl", 60)
    decorator.setdefault("tags", ["items", "item:{item_id}"])

    @app.get("/items/{item_id}")
    @cache_response(**decorator)
    async def get_item(item_id: int) -> Item:
        calls("item")
        return Item(id=item_id, name=f"item {item_id}")

    return app


async def test_hit_skips_the_endpoint_and_keeps_the_etag(
    cache: df.AsyncDataFerry, calls: Calls
) -> None:
    async with serve(item_app(cache, calls)) as client:
        first = await client.get("/items/1")
        second = await client.get("/items/1")
    assert first.status_code == second.status_code == 200
    assert calls["item"] == 1
    assert first.json() == second.json() == {"id": 1, "name": "item 1"}
    assert first.headers["content-type"] == "application/json"
    assert ETAG.match(first.headers["etag"])
    assert second.headers["etag"] == first.headers["etag"]
    assert first.headers["cache-control"] == "max-age=60"
    assert second.headers["content-length"] == str(len(first.content))


async def test_etag_is_a_hash_of_the_body_the_same_in_every_process(calls: Calls) -> None:
    # Two caches that share nothing compute the same response: the same validator.
    etags = []
    for _ in range(2):
        async with serve(item_app(df.AsyncDataFerry(), calls)) as client:
            response = await client.get("/items/1")
            etags.append(response.headers["etag"])
    assert calls["item"] == 2
    assert etags[0] == etags[1]
    digest = hashlib.blake2b(response.content, digest_size=16).hexdigest()
    assert etags[0] == f'"{digest}"'


@pytest.mark.parametrize(
    "if_none_match",
    ["{etag}", "W/{etag}", '"other", {etag}', '"a,b", W/{etag}', "*"],
)
async def test_if_none_match_gets_304_on_a_hit(
    cache: df.AsyncDataFerry, calls: Calls, if_none_match: str
) -> None:
    async with serve(item_app(cache, calls)) as client:
        etag = (await client.get("/items/1")).headers["etag"]
        response = await client.get(
            "/items/1", headers={"If-None-Match": if_none_match.format(etag=etag)}
        )
    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["etag"] == etag
    assert response.headers["cache-control"] == "max-age=60"
    assert "content-type" not in response.headers
    assert calls["item"] == 1


async def test_if_none_match_gets_304_on_a_fresh_computation(
    cache: df.AsyncDataFerry, calls: Calls
) -> None:
    async with serve(item_app(cache, calls)) as client:
        etag = (await client.get("/items/7")).headers["etag"]
        await cache.remove_by_tag("item:7")
        # The client still holds the representation the endpoint computes again: no body.
        response = await client.get("/items/7", headers={"If-None-Match": etag})
        assert calls["item"] == 2
        assert response.status_code == 304
        assert response.headers["etag"] == etag


@pytest.mark.parametrize("if_none_match", ['"nope"', 'W/"nope"', "", "garbage"])
async def test_if_none_match_that_does_not_match_gets_the_body(
    cache: df.AsyncDataFerry, calls: Calls, if_none_match: str
) -> None:
    async with serve(item_app(cache, calls)) as client:
        await client.get("/items/1")
        response = await client.get("/items/1", headers={"If-None-Match": if_none_match})
    assert response.status_code == 200
    assert response.json()["id"] == 1


async def test_cache_control_variants(calls: Calls) -> None:
    variants: list[tuple[dict[str, Any], str]] = [
        ({"ttl": 60, "private": True}, "private, max-age=60"),
        (
            {"ttl": 60, "cache_control": "public, max-age=5, s-maxage=60"},
            "public, max-age=5, s-maxage=60",
        ),
        ({"ttl": None}, "no-cache"),  # the cache's default ttl: revalidate with the ETag
        ({"ttl": None, "options": df.EntryOptions(ttl=30)}, "max-age=30"),
    ]
    for decorator, expected in variants:
        async with serve(item_app(df.AsyncDataFerry(), calls, **decorator)) as client:
            for _ in range(2):  # computed, then from the cache
                response = await client.get("/items/1")
                assert response.headers["cache-control"] == expected, decorator


async def test_a_request_cannot_bypass_the_shared_cache(
    cache: df.AsyncDataFerry, calls: Calls
) -> None:
    async with serve(item_app(cache, calls)) as client:
        await client.get("/items/1")
        response = await client.get("/items/1", headers={"Cache-Control": "no-cache"})
    assert response.status_code == 200
    assert calls["item"] == 1


async def test_query_string_order_is_one_key(cache: df.AsyncDataFerry, calls: Calls) -> None:
    app = FastAPI(lifespan=cache_lifespan(cache))

    @app.get("/search")
    @cache_response(ttl=60)
    async def search(a: int, b: str = "") -> Any:
        return {"call": calls("search"), "a": a, "b": b}

    async with serve(app) as client:
        first = await client.get("/search?a=1&b=x%20y")
        again = await client.get("/search?b=x+y&a=1")
        other = await client.get("/search?a=2&b=x+y")
        listed = await client.get("/search?a=1&a=2&b=")
        reordered = await client.get("/search?b=&a=2&a=1")  # repeated values keep their order
    assert again.json() == first.json()
    assert calls["search"] == 4
    assert other.json()["a"] == 2
    assert listed.json()["call"] != reordered.json()["call"]


async def test_vary_headers_make_separate_entries(cache: df.AsyncDataFerry, calls: Calls) -> None:
    app = FastAPI(lifespan=cache_lifespan(cache))

    @app.get("/hello")
    @cache_response(ttl=60, vary=["Accept-Language", "x-variant"])
    async def hello(accept_language: Annotated[str, Header()] = "en") -> dict[str, Any]:
        return {"lang": accept_language, "call": calls("hello")}

    async with serve(app) as client:
        fr = await client.get("/hello", headers={"Accept-Language": "fr"})
        de = await client.get("/hello", headers={"Accept-Language": "de"})
        fr_again = await client.get("/hello", headers={"accept-language": "fr"})
        fr_variant = await client.get("/hello", headers={"Accept-Language": "fr", "X-Variant": "b"})
        default = await client.get("/hello")
    assert (fr.json()["lang"], de.json()["lang"]) == ("fr", "de")
    assert fr_again.json() == fr.json()
    assert fr_variant.json()["call"] == 3
    assert default.json() == {"lang": "en", "call": 4}
    assert fr.headers["vary"] == "Accept-Language, x-variant"
    assert fr.headers["etag"] != de.headers["etag"]


async def test_other_methods_are_not_cached_and_head_shares_the_get_entry(
    cache: df.AsyncDataFerry, calls: Calls
) -> None:
    app = FastAPI(lifespan=cache_lifespan(cache))

    @app.api_route("/thing", methods=["GET", "HEAD", "POST"])
    @cache_response(ttl=60)
    async def thing(request: Request) -> dict[str, Any]:
        return {"method": request.method, "call": calls("thing")}

    async with serve(app) as client:
        posts = [await client.post("/thing") for _ in range(2)]
        get = await client.get("/thing")
        head = await client.head("/thing")
    assert [p.json()["call"] for p in posts] == [1, 2]
    assert "etag" not in posts[0].headers
    assert get.json() == {"method": "GET", "call": 3}
    assert head.status_code == 200
    assert head.headers["etag"] == get.headers["etag"]
    assert calls["thing"] == 3


async def test_responses_that_must_not_be_shared_are_not_cached(
    cache: df.AsyncDataFerry, calls: Calls
) -> None:
    app = FastAPI(lifespan=cache_lifespan(cache))

    @app.get("/missing")
    @cache_response(ttl=60)
    async def missing() -> None:
        calls("missing")
        raise HTTPException(status_code=404, detail="nothing here")

    @app.get("/created", status_code=201)
    @cache_response(ttl=60)
    async def created() -> dict[str, int]:
        return {"call": calls("created")}

    @app.get("/accepted")
    @cache_response(ttl=60)
    async def accepted(response: Response) -> dict[str, int]:
        response.status_code = 202
        return {"call": calls("accepted")}

    @app.get("/cookie")
    @cache_response(ttl=60)
    async def cookie(response: Response) -> dict[str, int]:
        response.set_cookie("session", "secret")
        return {"call": calls("cookie")}

    @app.get("/private")
    @cache_response(ttl=60)
    async def private() -> Response:
        calls("private")
        return PlainTextResponse("mine", headers={"Cache-Control": "private, max-age=10"})

    async with serve(app) as client:
        for path, status in [
            ("/missing", 404),
            ("/created", 201),
            ("/accepted", 202),
            ("/cookie", 200),
            ("/private", 200),
        ]:
            for _ in range(2):
                response = await client.get(path)
                assert response.status_code == status, path
            assert calls[path.strip("/")] == 2, path
            assert "etag" not in response.headers, path
    assert response.headers["cache-control"] == "private, max-age=10"


async def test_remove_by_tag_invalidates_a_cached_route(
    cache: df.AsyncDataFerry, calls: Calls
) -> None:
    async with serve(item_app(cache, calls)) as client:
        await client.get("/items/1")
        await client.get("/items/2")
        await cache.remove_by_tag("item:1")
        assert (await client.get("/items/1")).json() == {"id": 1, "name": "item 1"}
        assert calls["item"] == 3  # item 1 computed again
        await client.get("/items/2")
        assert calls["item"] == 3  # item 2 still cached
        await cache.remove_by_tag("items")
        await client.get("/items/2")
        assert calls["item"] == 4


async def test_concurrent_cold_requests_run_the_endpoint_once(
    cache: df.AsyncDataFerry, calls: Calls
) -> None:
    app = FastAPI(lifespan=cache_lifespan(cache))
    release = asyncio.Event()
    all_waiting = asyncio.Event()
    joins = 0

    def on_event(name: str, attributes: dict[str, Any]) -> None:
        nonlocal joins
        if name == "stampede_joins":
            joins += 1
            if joins == 9:
                all_waiting.set()

    cache.subscribe(on_event)

    @app.get("/slow")
    @cache_response(ttl=60)
    async def slow() -> dict[str, int]:
        call = calls("slow")
        await release.wait()
        return {"call": call}

    async with serve(app) as client:
        requests = asyncio.gather(*(client.get("/slow") for _ in range(10)))
        await asyncio.wait_for(all_waiting.wait(), 10)
        release.set()
        responses = await requests
    assert calls["slow"] == 1
    assert {r.json()["call"] for r in responses} == {1}
    assert len({r.headers["etag"] for r in responses}) == 1


async def test_concurrent_requests_do_not_share_a_response_that_is_not_shareable(
    cache: df.AsyncDataFerry, calls: Calls
) -> None:
    app = FastAPI(lifespan=cache_lifespan(cache))
    release = asyncio.Event()
    joined = asyncio.Event()
    cache.subscribe(lambda name, _: joined.set() if name == "stampede_joins" else None)

    @app.get("/me")
    @cache_response(ttl=60)
    async def me(response: Response, user: Annotated[str, Header()]) -> dict[str, str]:
        calls("me")
        await release.wait()
        response.set_cookie("session", user)  # per-user: never handed to another request
        return {"user": user}

    async with serve(app) as client:
        both = asyncio.gather(
            client.get("/me", headers={"user": "ann"}), client.get("/me", headers={"user": "bob"})
        )
        await asyncio.wait_for(joined.wait(), 10)
        release.set()
        ann, bob = await both
    assert (ann.json(), bob.json()) == ({"user": "ann"}, {"user": "bob"})
    assert (ann.cookies["session"], bob.cookies["session"]) == ("ann", "bob")
    assert calls["me"] == 2


async def test_dependencies_run_on_every_hit(cache: df.AsyncDataFerry, calls: Calls) -> None:
    def authenticated(response: Response, token: Annotated[str | None, Header()] = None) -> str:
        if token != "good":
            raise HTTPException(status_code=401)
        response.headers["x-request"] = str(calls("auth"))  # this request's: never stored
        return token

    app = FastAPI(lifespan=cache_lifespan(cache))

    @app.get("/report")
    @cache_response(ttl=60)
    async def report(response: Response, _: Annotated[str, Depends(authenticated)]) -> list[int]:
        response.headers["x-report"] = f"run {calls('report')}"  # part of the representation
        return [1, 2, 3]

    async with serve(app) as client:
        first = await client.get("/report", headers={"token": "good"})
        second = await client.get("/report", headers={"token": "good"})
        refused = await client.get("/report", headers={"token": "bad"})
    assert (first.json(), second.json()) == ([1, 2, 3], [1, 2, 3])
    assert calls["report"] == 1
    assert (first.headers["x-request"], second.headers["x-request"]) == ("1", "2")
    assert second.headers["x-report"] == "run 1"
    assert refused.status_code == 401


class Account(BaseModel):
    name: str


async def test_responses_are_rendered_as_fastapi_renders_them(
    cache: df.AsyncDataFerry, calls: Calls
) -> None:
    app = FastAPI(lifespan=cache_lifespan(cache))
    row = {"name": "ann", "password_hash": "x1", "note": "é"}

    @app.get("/plain/account", response_model=Account)
    async def plain_account() -> Any:
        return row

    @app.get("/cached/account", response_model=Account)
    @cache_response(ttl=60)
    async def cached_account() -> Any:
        calls("account")
        return row

    @app.get("/cached/text", response_class=PlainTextResponse)
    @cache_response(ttl=60)
    def cached_text() -> str:  # a sync endpoint: run in the thread pool, as FastAPI does
        calls("text")
        return "héllo"

    @app.get("/cached/bytes")
    @cache_response(ttl=60)
    async def cached_bytes() -> Response:
        calls("bytes")
        return Response(bytes(range(256)), media_type="application/octet-stream")

    async with serve(app) as client:
        plain = await client.get("/plain/account")
        for _ in range(2):
            account = await client.get("/cached/account")
            text = await client.get("/cached/text")
            raw = await client.get("/cached/bytes")
            # The response model filters the row: the hash never reaches the client (or cache).
            assert account.json() == plain.json() == {"name": "ann"}
            assert account.headers["content-type"] == plain.headers["content-type"]
            assert (text.text, text.headers["content-type"]) == (
                "héllo",
                "text/plain; charset=utf-8",
            )
            assert raw.content == bytes(range(256))
            assert raw.headers["content-type"] == "application/octet-stream"
    assert (calls["account"], calls["text"], calls["bytes"]) == (1, 1, 1)


async def test_the_endpoint_keeps_its_signature_for_openapi(
    cache: df.AsyncDataFerry, calls: Calls
) -> None:
    schema = item_app(cache, calls).openapi()
    operation = schema["paths"]["/items/{item_id}"]["get"]
    assert [p["name"] for p in operation["parameters"]] == ["item_id"]
    ok = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/Item"}
    assert operation["operationId"].startswith("get_item")


async def test_fail_safe_serves_the_last_good_response_but_not_over_an_http_error(
    tmp_path: Path,
) -> None:
    # The stale copy that fail-safe serves after expire() is kept in L2.
    cache = df.AsyncDataFerry(distributed=df.SQLiteCache(tmp_path / "l2.sqlite"))
    app = FastAPI(lifespan=cache_lifespan(cache))
    outcome: list[str] = ["ok"]

    @app.get("/stock")
    @cache_response(ttl=60, options=df.EntryOptions(fail_safe=True))
    async def stock() -> dict[str, str]:
        if outcome[0] == "down":
            raise RuntimeError("database down")
        if outcome[0] == "gone":
            raise HTTPException(status_code=404)
        return {"stock": "12"}

    async with serve(app) as client:
        good = await client.get("/stock")
        await cache.expire("http:/stock")  # the documented key: "http:" + path (+ query)
        outcome[0] = "down"
        stale = await client.get("/stock")
        assert (stale.status_code, stale.json()) == (200, {"stock": "12"})
        assert stale.headers["etag"] == good.headers["etag"]
        await cache.expire("http:/stock")
        outcome[0] = "gone"
        assert (await client.get("/stock")).status_code == 404  # an answer, not a failure


async def test_tenant_views_keep_tenants_apart(cache: df.AsyncDataFerry, calls: Calls) -> None:
    def tenant_cache(cache: CacheDep, x_tenant: Annotated[str, Header()]) -> df.AsyncDataFerry:
        return cache.tenant(x_tenant)

    app = FastAPI(lifespan=cache_lifespan(cache))

    @app.get("/dashboard")
    @cache_response(ttl=60, tags=["dashboard"], cache=tenant_cache)
    async def dashboard(x_tenant: Annotated[str, Header()]) -> dict[str, Any]:
        return {"tenant": x_tenant, "call": calls("dashboard")}

    async with serve(app) as client:
        acme = await client.get("/dashboard", headers={"X-Tenant": "acme"})
        globex = await client.get("/dashboard", headers={"X-Tenant": "globex"})
        await cache.tenant("globex").remove_by_tag("dashboard")
        acme_again = await client.get("/dashboard", headers={"X-Tenant": "acme"})
        globex_again = await client.get("/dashboard", headers={"X-Tenant": "globex"})
    assert (acme.json()["tenant"], globex.json()["tenant"]) == ("acme", "globex")
    assert acme_again.json() == acme.json()
    assert globex_again.json()["call"] == 3


async def test_a_cache_dependency_that_returns_no_cache_is_a_clear_error(
    cache: df.AsyncDataFerry,
) -> None:
    app = FastAPI(lifespan=cache_lifespan(cache))

    @app.get("/")
    @cache_response(ttl=60, cache=lambda: "not a cache")
    async def handler() -> int:
        return 1

    async with serve(app) as client:
        with pytest.raises(df.ConfigurationError, match="not an AsyncDataFerry"):
            await client.get("/")


async def test_lifespan_accepts_the_cache_class_as_its_factory() -> None:
    app = FastAPI(lifespan=cache_lifespan(df.AsyncDataFerry))

    @app.get("/")
    async def handler(cache: CacheDep) -> str:
        return cache.namespace

    async with serve(app) as client:
        assert (await client.get("/")).json() == "dataferry"


async def test_custom_key_and_long_urls(cache: df.AsyncDataFerry, calls: Calls) -> None:
    app = FastAPI(lifespan=cache_lifespan(cache))

    @app.get("/users/{user_id}")
    @cache_response(ttl=60, key="user:{user_id}")
    async def user(user_id: int, fields: str = "") -> dict[str, Any]:
        return {"id": user_id, "call": calls("user")}

    @app.get("/echo")
    @cache_response(ttl=60, key=lambda request: request.url.path.upper())
    async def echo(q: str = "") -> dict[str, Any]:
        return {"q": q, "call": calls("echo")}

    @app.get("/long")
    @cache_response(ttl=60)
    async def long(q: str) -> int:
        return calls("long")

    long_query = "x" * 3000  # over the key limit: hashed
    async with serve(app) as client:
        assert (await client.get("/users/1?fields=a")).json()["call"] == 1
        assert (await client.get("/users/01?fields=b")).json()["call"] == 1  # the key ignores them
        assert (await client.get("/echo?q=a")).json() == (await client.get("/echo?q=b")).json()
        assert (await client.get(f"/long?q={long_query}")).json() == 1
        assert (await client.get(f"/long?q={long_query}")).json() == 1
        assert (await client.get(f"/long?q={long_query}y")).json() == 2
        assert await cache.exists("http:user:1")


async def test_a_second_node_serves_the_response_from_l2(redis_url: str, calls: Calls) -> None:
    first_cache = df.AsyncDataFerry(distributed=df.RedisCache.from_url(redis_url))
    second_cache = df.AsyncDataFerry(distributed=df.RedisCache.from_url(redis_url))
    first_calls, second_calls = Calls(), Calls()
    async with serve(item_app(first_cache, first_calls)) as client:
        computed = await client.get("/items/3")
    async with serve(item_app(second_cache, second_calls)) as client:
        from_l2 = await client.get("/items/3")
        not_modified = await client.get(
            "/items/3", headers={"If-None-Match": computed.headers["etag"]}
        )
    assert (first_calls["item"], second_calls["item"]) == (1, 0)
    assert from_l2.content == computed.content
    assert from_l2.headers["etag"] == computed.headers["etag"]
    assert from_l2.headers["content-type"] == "application/json"
    assert not_modified.status_code == 304
    assert second_cache.stats().distributed_hits >= 1


# == bad input =====================================================================================


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ttl": -1}, "ttl"),
        ({"ttl": 0}, "ttl"),
        ({"ttl": "60"}, "ttl"),
        ({"vary": "accept-language"}, "vary"),
        ({"vary": [1]}, "vary"),
        ({"vary": ["bad header"]}, "vary"),
        ({"tags": "items"}, "tags"),
        ({"tags": [""]}, "tags"),
        ({"key": 3}, "key"),
        ({"cache_control": "max-age=1\r\nSet-Cookie: x=1"}, "cache_control"),
        ({"cache_control": " "}, "cache_control"),
        ({"private": "yes"}, "private"),
        ({"options": {"ttl": 1}}, "options"),
        ({"cache": 3}, "cache"),
    ],
)
def test_bad_arguments_are_refused_at_decoration(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(df.ConfigurationError, match=message):
        cache_response(**kwargs)


@pytest.mark.parametrize(
    "kwargs", [{"tags": ["item:{nope}"]}, {"key": "item:{0}"}, {"tags": ["{item_id"]}]
)
def test_templates_must_name_the_endpoints_parameters(kwargs: dict[str, Any]) -> None:
    async def endpoint(item_id: int) -> None: ...

    with pytest.raises(df.ConfigurationError, match="template"):
        cache_response(**kwargs)(endpoint)


def test_streaming_endpoints_are_refused() -> None:
    async def stream() -> AsyncIterator[bytes]:
        yield b""

    def sync_stream() -> Iterator[bytes]:
        yield b""

    for endpoint in (stream, sync_stream):
        with pytest.raises(df.ConfigurationError, match="streamed"):
            cache_response(ttl=1)(endpoint)


def test_import_without_fastapi_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "fastapi", None)  # "not installed" for import statements
    monkeypatch.delitem(sys.modules, "dataferry.contrib.fastapi")
    with pytest.raises(ImportError, match=re.escape("pip install 'dataferry[fastapi]'")):
        importlib.import_module("dataferry.contrib.fastapi")
