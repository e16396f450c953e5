"""Configuration and input validation: clear DataFerryError subclasses, raised up front."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

import dataferry as df
from dataferry._keys import check_key


class StrKey(str):
    pass


@pytest.mark.parametrize(
    "kwargs",
    [
        {"memory": {"max_entries": 10}},
        {"distributed": "redis://localhost"},
        {"codec": "json"},
        {"namespace": "has:colon"},
        {"namespace": ""},
        {"namespace": "x" * 65},
        {"default_ttl": 0},
        {"default_ttl": -5},
        {"max_payload_bytes": 0},
        {"max_payload_bytes": True},
        {"max_payload_bytes": 1.5},
    ],
)
@pytest.mark.parametrize("facade", [df.AsyncDataFerry, df.DataFerry])
def test_bad_constructor_arguments(facade: Any, kwargs: dict[str, Any]) -> None:
    with pytest.raises(df.DataFerryError) as info:
        facade(**kwargs)
    assert isinstance(info.value, ValueError)  # ConfigurationError / InvalidTenantError


def test_entry_options_validate_their_fields() -> None:
    with pytest.raises(df.ConfigurationError):
        df.EntryOptions(ttl=-1)
    with pytest.raises(df.ConfigurationError):
        df.EntryOptions(skip_memory="yes")  # type: ignore[arg-type]
    with pytest.raises(df.ConfigurationError):
        df.Entry("v", ttl=float("nan"))
    merged = df.EntryOptions(ttl=10, l1_ttl=1).merged(df.EntryOptions(ttl=20))
    assert (merged.ttl, merged.l1_ttl) == (20, 1)


def test_default_options_apply_to_every_call() -> None:
    cache = df.DataFerry(default_options=df.EntryOptions(skip_memory=True))
    cache.set("k", 1)
    assert cache.stats().memory_entries == 0


def test_options_must_be_entry_options() -> None:
    cache = df.DataFerry()
    with pytest.raises(df.ConfigurationError):
        cache.set("k", 1, options={"ttl": 5})  # type: ignore[arg-type]
    with pytest.raises(df.ConfigurationError):
        cache.get_or_set("k", lambda: 1, options=df.EntryOptions(), ttl=-1)


@pytest.mark.parametrize("tags", ["users", [""], [1], ["\ud800"], ["x" * 1025], ["t"] * 257])
def test_bad_tags_are_refused_before_anything_is_written(tags: Any) -> None:
    cache = df.DataFerry()
    with pytest.raises(df.ConfigurationError):
        cache.set("k", 1, tags=tags)
    assert cache.try_get("k") == (False, None)


def test_key_rules() -> None:
    assert check_key(StrKey("abc")) == "abc"
    assert type(check_key(StrKey("abc"))) is str
    with pytest.raises(df.InvalidKeyError):
        check_key("\ud800")  # a lone surrogate can't be stored as UTF-8
    with pytest.raises(df.InvalidKeyError):
        check_key("\ud800" * 300)
    assert check_key("é" * 300) == "é" * 300  # 600 bytes: fine


def test_batch_calls_refuse_a_single_string() -> None:
    cache = df.DataFerry()
    with pytest.raises(df.InvalidKeyError):
        cache.get_many("abc")
    with pytest.raises(df.InvalidKeyError):
        cache.remove_many("abc")
    with pytest.raises(df.ConfigurationError, match="mapping"):
        cache.set_many([("a", 1)])  # type: ignore[arg-type]
    with pytest.raises(df.InvalidKeyError):
        cache.get_or_set_many("abc", lambda keys: {})


def test_get_or_set_many_needs_a_mapping_back() -> None:
    cache = df.DataFerry()
    with pytest.raises(df.ConfigurationError, match="mapping"):
        cache.get_or_set_many(["a"], lambda keys: [1])  # type: ignore[arg-type,return-value]
    with pytest.raises(LookupError):
        cache.get_or_set_many(["a"], lambda keys: {}[keys[0]])
    assert cache.stats().factory_errors == 1


def test_builder_options(tmp_path: Path) -> None:
    with pytest.raises(df.ConfigurationError):
        df.DataFerry.builder().with_memory(df.MemoryCache(), max_entries=5)
    keys = df.Keyring({"k1": os.urandom(32)}, primary="k1")
    cache = (
        df.DataFerry.builder()
        .with_sqlite(str(tmp_path / "l2.sqlite"))
        .with_serializer(df.MsgpackSerializer())
        .with_encryption(df.AesGcmEncryptor(keys))
        .with_compression(df.GzipCompressor(min_size=1))
        .with_default_options(df.EntryOptions(l1_ttl=5))
        .with_max_payload_bytes(10_000)
        .build()
    )
    with cache:
        cache.set("k", {"a": [1, 2]})
        assert cache.get("k") == {"a": [1, 2]}
        with pytest.raises(df.PayloadTooLargeError):
            cache.set("big", os.urandom(20_000).hex())


def test_builder_telemetry_and_backplane(redis_url: str) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    tracer = TracerProvider()
    tracer.add_span_processor(SimpleSpanProcessor(exporter))
    cache = (
        df.DataFerry.builder()
        .with_redis(redis_url)
        .with_namespace("built")
        .with_backplane(df.RedisBackplane.from_url(redis_url))
        .with_telemetry(df.Telemetry(tracer_provider=tracer))
        .build()
    )
    with cache:
        cache.set("k", 1)
        assert cache.stats().backplane_sent == 1
    assert "dataferry.set" in [span.name for span in exporter.get_finished_spans()]
    quiet = df.DataFerry.builder().with_telemetry(None).build()
    with quiet:
        quiet.set("k", 1)


def test_builder_with_redis_url_and_client(redis_url: str) -> None:
    import redis

    by_url = df.DataFerry.builder().with_redis(redis_url).with_namespace("b").build()
    with by_url:
        by_url.set("k", 1)
    client = redis.Redis.from_url(redis_url)
    by_client = df.DataFerry.builder().with_redis(client).with_namespace("b").without_memory()
    with by_client.build() as cache:
        assert cache.get("k") == 1
    client.close()


def test_repr_shows_configuration_not_secrets() -> None:
    cache = df.AsyncDataFerry(namespace="shop")
    text = repr(cache.tenant("acme"))
    assert "shop" in text
    assert "acme" in text
