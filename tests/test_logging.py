"""The cache's logging rules: repeats are counted, not logged; keys are hashed by default."""

from __future__ import annotations

import logging

import pytest

from dataferry import _logging
from dataferry._logging import KeyLog, Throttle


def test_a_throttle_lets_one_through_per_interval_and_counts_the_rest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now = [1000.0]
    monkeypatch.setattr(_logging.time, "monotonic", lambda: now[0])
    throttle = Throttle()
    assert throttle.allow() == 0
    assert throttle.allow() is None
    assert throttle.allow() is None
    now[0] += _logging.INTERVAL
    assert throttle.allow() == 2  # the next message says how many were held back
    assert throttle.allow() is None


def test_the_next_message_says_how_many_were_held_back(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    now = [1000.0]
    monkeypatch.setattr(_logging.time, "monotonic", lambda: now[0])
    log = KeyLog("shop")
    with caplog.at_level(logging.WARNING, logger="dataferry"):
        for _ in range(4):
            log.warn("failsafe", "serving a stale value of {key} (%s)", "factory_error", key="k")
        now[0] += _logging.INTERVAL
        log.warn("failsafe", "serving a stale value of {key} (%s)", "factory_error", key="k")
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert "3 more like it" in messages[1]


def test_labels_are_stable_hashes_unless_keys_are_shown() -> None:
    log = KeyLog("shop")
    assert log.label("user:alice") == log.label("user:alice")
    assert log.label("user:alice") != log.label("user:bob")
    assert "alice" not in log.label("user:alice")
    log.show_keys = True
    assert log.label("user:100%") == "'user:100%'"
