"""How the cache logs: the stdlib logger ``dataferry``, no keys or values, no floods.

* **No values, no keys** unless asked for: a key may be personal data
  (``user:alice@example.com``). By default a message names a key by a short hash of it
  (``key#3f2a9c1d``: the same key always gets the same label, so occurrences can be matched),
  and ``Telemetry(record_keys=True)`` shows the key itself. Values are never logged.
* **One message per state change, not per call**: state changes (the L2 failed / answers
  again, the circuit breaker opened / closed, the backplane disconnected / reconnected) are
  logged where they happen; events that repeat per call (an undecodable entry, a stale value
  served, a refresh that failed) go through a :class:`Throttle`: the first is logged, the
  next ones within a minute are counted, and the next message says how many there were.
* **Structured**: every message carries ``extra`` fields ``dataferry_event``,
  ``dataferry_namespace`` and, where a key is concerned, ``dataferry_key`` (the label), for
  JSON log formatters.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from typing import Any, Final

__all__ = ["INTERVAL", "KeyLog", "Throttle", "logger"]

logger = logging.getLogger("dataferry")

#: Seconds during which repeats of a throttled message are counted instead of logged.
INTERVAL: Final = 60.0


class Throttle:
    """Lets one message through per :data:`INTERVAL`; counts the ones it holds back."""

    __slots__ = ("_held", "_lock", "_next")

    def __init__(self) -> None:
        self._next = 0.0
        self._held = 0
        self._lock = threading.Lock()

    def allow(self) -> int | None:
        """None: hold this one back; else log it, noting the number held back since the last."""
        now = time.monotonic()
        with self._lock:
            if now < self._next:
                self._held += 1
                return None
            held, self._held = self._held, 0
            self._next = now + INTERVAL
            return held


class KeyLog:
    """The logging of one cache: its namespace, whether keys show, one throttle per event."""

    __slots__ = ("_throttles", "namespace", "show_keys")

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        #: Show keys themselves, not their hashes (``Telemetry(record_keys=True)``).
        self.show_keys = False
        self._throttles: dict[str, Throttle] = {}

    def label(self, key: str) -> str:
        """How messages name ``key``: itself, or ``key#`` and 8 hex digits of its hash."""
        if self.show_keys:
            return repr(key)
        digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=4)
        return f"key#{digest.hexdigest()}"

    def warn(self, event: str, message: str, *args: Any, key: str | None = None) -> None:
        """Log a repeating event at WARNING, at most once per :data:`INTERVAL` per ``event``.

        ``message`` may hold ``{key}``, replaced by the key's label.
        """
        throttle = self._throttles.get(event)
        if throttle is None:
            throttle = self._throttles.setdefault(event, Throttle())
        held = throttle.allow()
        if held is None:
            return
        extra: dict[str, Any] = {"dataferry_event": event, "dataferry_namespace": self.namespace}
        if key is not None:
            label = self.label(key)
            extra["dataferry_key"] = label
            message = message.replace("{key}", label.replace("%", "%%"))
        if held:
            message += f" ({held} more like it in the last {INTERVAL:.0f} s, not logged)"
        logger.warning(message, *args, extra=extra)
