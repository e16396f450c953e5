"""The few primitives whose async and sync forms differ, so everything above them is written once.

``_async/`` code uses the ``Async*`` names; ``scripts/unasync.py`` turns them into the plain
names for ``_sync/`` (httpcore's ``_synchronization.py`` is the model). Each pair has the same
methods and the same meaning:

- :class:`AsyncOutcome` / :class:`Outcome`: a result that one producer settles once and any
  number of waiters wait for, with a bound. Every waiter that gets an exception gets its own
  copy with the producer's traceback, so tracebacks never grow with the number of waiters.
- :class:`AsyncRuntime` / :class:`Runtime`: what a cache owns: its background tasks (async:
  factories that outlive a cancelled caller), its worker threads for sync factories, and its
  open/closed state.
- :class:`AsyncWorker` / :class:`Worker`: one long-lived background job of a cache (the L2
  writer: background writes and auto-recovery), started on demand, woken early, stopped on
  close. Async: a task in the event loop that started it; sync: a daemon thread.
- :data:`AsyncCancelled` / :data:`Cancelled`: the cancellation exception (sync code is never
  cancelled, so its twin is a class nothing raises).
- :class:`AsyncBatcher` / :class:`Batcher`: coalesces the keys asked for concurrently into one
  call per batch (the loader's DataLoader-style batching). Async: the keys asked for in one
  iteration of the event loop; threads: the keys asked for within a small window.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import copy
import functools
import inspect
import logging
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping
from types import TracebackType
from typing import Any

from dataferry._errors import CacheClosedError, ConfigurationError

__all__ = [
    "TIMED_OUT",
    "AsyncBatcher",
    "AsyncCancelled",
    "AsyncOutcome",
    "AsyncRun",
    "AsyncRuntime",
    "Batcher",
    "Cancelled",
    "KeyFailure",
    "Outcome",
    "Run",
    "Runtime",
]

logger = logging.getLogger("dataferry")

#: What :meth:`AsyncOutcome.wait` returns when the bound passed first (never a real value).
TIMED_OUT: Any = type("_TimedOut", (), {"__repr__": lambda self: "TIMED_OUT"})()

AsyncCancelled = asyncio.CancelledError


class Cancelled(BaseException):
    """Sync twin of :data:`AsyncCancelled`: sync code is never cancelled; nothing raises it."""


def _rethrow(error: BaseException, tb: TracebackType | None) -> BaseException:
    """Return a copy of ``error`` to raise in one more waiter, with the producer's traceback.

    Raising one object in many waiters would chain every waiter's frames onto its traceback
    (and, across threads, race on it). Exceptions that can't be copied are raised as they are.
    """
    try:
        clone = copy.copy(error)
    except Exception:
        clone = error
    if type(clone) is not type(error):  # pragma: no cover - a __reduce__ that lies
        clone = error
    if clone is not error:
        clone.__cause__ = error.__cause__
        clone.__context__ = error.__context__
        clone.__suppress_context__ = error.__suppress_context__
    return clone.with_traceback(tb)


class KeyFailure:
    """A batch's result for one key it could not produce: ``error`` reaches its waiters.

    Lets a batch fail per key (the keys it served, from L2 or fail-safe, keep their values)
    while every caller waiting for a failed key still gets the error, as a single flight's
    joiners do, instead of each loading the key again.
    """

    __slots__ = ("error", "tb")

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.tb: TracebackType | None = error.__traceback__

    def raised(self) -> BaseException:
        """A copy of the error to raise in one more waiter (see :func:`_rethrow`)."""
        return _rethrow(self.error, self.tb)


class AsyncOutcome:
    """A value or exception that one producer settles and any number of tasks wait for.

    Bound to the event loop that created it: :meth:`usable` tells whether the running loop
    can wait for it (a cache used from several loops keeps their work apart).
    """

    __slots__ = ("_future", "_tb")

    def __init__(self) -> None:
        self._future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._tb: TracebackType | None = None

    def usable(self) -> bool:
        """Whether the running event loop can wait for this outcome."""
        return self._future.get_loop() is asyncio.get_running_loop()

    def settle(self, value: Any, error: BaseException | None) -> None:
        """Set the value, or the exception when ``error`` is given (only the first call counts)."""
        fut = self._future
        if fut.done():
            return
        if fut.get_loop().is_closed():  # pragma: no cover - the loop ended under us
            return
        if error is None:
            fut.set_result(value)
        else:
            self._tb = error.__traceback__
            fut.set_exception(error)
            # Nobody may be waiting: mark the exception retrieved, or asyncio would log
            # "exception was never retrieved" for a failure that was already raised.
            fut.exception()

    async def wait(self, timeout: float | None) -> Any:
        """Return the value (raise the exception), or :data:`TIMED_OUT` after ``timeout`` s.

        Cancelling the waiter never cancels the producer (the future is shielded).
        """
        fut = self._future
        if not fut.done():
            try:
                if timeout is None:
                    await asyncio.shield(fut)
                else:
                    await asyncio.wait_for(asyncio.shield(fut), timeout)
            except Exception:  # the producer's failure: raised below, as a fresh copy
                # (a TimeoutError may be the bound, or the producer's own, e.g. a
                # FactoryTimeoutError: the future tells them apart)
                if not fut.done():
                    return TIMED_OUT
        error = fut.exception()
        if error is not None:
            raise _rethrow(error, self._tb)
        return fut.result()


class Outcome:
    """Thread twin of :class:`AsyncOutcome`: a lock held until the producer settles it."""

    __slots__ = ("_done", "_error", "_tb", "_value")

    def __init__(self) -> None:
        # A plain Lock may be released by another thread: waiters acquire it with a timeout
        # (and release it at once) to wait for the settle, which releases it.
        self._done = threading.Lock()
        self._done.acquire()
        self._value: Any = None
        self._error: BaseException | None = None
        self._tb: TracebackType | None = None

    def usable(self) -> bool:
        """Whether this thread can wait for the outcome (always: threads share it)."""
        return True

    def settle(self, value: Any, error: BaseException | None) -> None:
        """Set the value, or the exception when ``error`` is given (call exactly once)."""
        self._value = value
        self._error = error
        if error is not None:
            self._tb = error.__traceback__
        self._done.release()

    def wait(self, timeout: float | None) -> Any:
        """Return the value (raise the exception), or :data:`TIMED_OUT` after ``timeout`` s."""
        done = self._done
        if not done.acquire(timeout=-1 if timeout is None else timeout):
            return TIMED_OUT
        done.release()
        error = self._error
        if error is not None:
            raise _rethrow(error, self._tb)
        return self._value


class AsyncRun:
    """A factory running in a task the cache owns, which callers wait for with a bound.

    Waiting past the bound leaves the factory running; :meth:`then` hands its result to more
    work the cache owns (a background completion after a factory timeout).
    """

    __slots__ = ("_runtime", "_task")

    def __init__(self, runtime: AsyncRuntime, task: asyncio.Task[Any]) -> None:
        self._runtime = runtime
        self._task = task

    async def wait(self, timeout: float | None) -> Any:
        """The factory's result (or its exception), or :data:`TIMED_OUT` after ``timeout`` s."""
        task = self._task
        if not task.done():
            await asyncio.wait((task,), timeout=timeout)  # never cancels the task
            if not task.done():
                return TIMED_OUT
        return task.result()

    def then(self, fn: Callable[[Any], Coroutine[Any, Any, Any]]) -> None:
        """When the factory finishes, run ``fn(run)`` (a coroutine) in a task the cache owns."""
        self._runtime.spawn(fn, self)


class Run:
    """Thread twin of :class:`AsyncRun`: a factory running in a worker thread the cache owns."""

    __slots__ = ("_future", "_runtime")

    def __init__(self, runtime: Runtime, future: concurrent.futures.Future[Any]) -> None:
        self._runtime = runtime
        self._future = future

    def wait(self, timeout: float | None) -> Any:
        """The factory's result (or its exception), or :data:`TIMED_OUT` after ``timeout`` s."""
        try:
            return self._future.result(timeout)
        except concurrent.futures.TimeoutError:
            if self._future.done():  # the factory itself raised a TimeoutError
                raise
            return TIMED_OUT

    def then(self, fn: Callable[[Any], Any]) -> None:
        """When the factory finishes, call ``fn(run)`` in a worker thread the cache owns."""
        self._runtime.background(fn, self)


def _close_timeout(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ConfigurationError(f"close_timeout must be a number of seconds >= 0, got {value!r}")
    return float(value)


def _is_async_callable(fn: Callable[..., Any]) -> bool:
    while isinstance(fn, functools.partial):
        fn = fn.func
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - an object with an async __call__
    )


class AsyncRuntime:
    """What an :class:`~dataferry.AsyncDataFerry` owns: tasks, worker threads, open/closed.

    Background tasks (a factory that goes on after its first caller was cancelled) are kept
    here, so the garbage collector can't destroy a pending one, and :meth:`aclose` waits for
    them (up to a bound), then cancels the rest.
    """

    __slots__ = ("_executor", "_lock", "_tasks", "close_timeout", "closed", "offload")

    def __init__(self, *, offload: bool, close_timeout: float) -> None:
        self.closed = False
        self.offload = offload
        self.close_timeout = _close_timeout(close_timeout)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def check_open(self) -> None:
        """Raise :class:`CacheClosedError` if the cache was closed."""
        if self.closed:
            raise CacheClosedError("this cache is closed; create a new one")

    def spawn(self, fn: Callable[..., Coroutine[Any, Any, Any]], /, *args: Any) -> None:
        """Run ``fn(*args)`` in a task the cache owns (the sync twin calls it right away)."""
        task = asyncio.get_running_loop().create_task(fn(*args))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def background(self, fn: Callable[..., Coroutine[Any, Any, Any]], /, *args: Any) -> None:
        """Run ``fn(*args)`` in the background, in a task the cache owns (same as spawn)."""
        self.spawn(fn, *args)

    def start(self, fn: Callable[[], Any]) -> AsyncRun:
        """Start a factory in a task the cache owns (a sync one in a worker thread).

        For factories that may be abandoned on a timeout: the event loop stays free while a
        sync factory runs, and the factory goes on after its callers stopped waiting.
        """
        loop = asyncio.get_running_loop()
        if _is_async_callable(fn):
            coro: Coroutine[Any, Any, Any] = self._drive(fn, None)
        else:
            coro = self._drive(fn, loop.run_in_executor(self._pool(), fn))
        task = loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return AsyncRun(self, task)

    @staticmethod
    async def sleep(seconds: float) -> None:
        """Wait ``seconds`` without blocking the event loop (a blocking wait in the twin)."""
        await asyncio.sleep(seconds)

    @staticmethod
    async def _drive(fn: Callable[[], Any], threaded: asyncio.Future[Any] | None) -> Any:
        result = fn() if threaded is None else await threaded
        if inspect.isawaitable(result):
            result = await result
        return result

    def inline(self, fn: Callable[[], Any]) -> bool:
        """Whether :meth:`begin` runs ``fn`` to its end here (not a coroutine, not offloaded)."""
        return not _is_async_callable(fn) and not self.offload

    def begin(self, fn: Callable[[], Any]) -> Any:
        """Start a factory: its result, or an awaitable of it for the caller to drive.

        The awaitable is the factory's coroutine, or a worker thread's future (``offload``).
        """
        if self.offload and not _is_async_callable(fn):
            return asyncio.get_running_loop().run_in_executor(self._pool(), fn)
        return fn()

    async def call(self, fn: Callable[[], Any]) -> Any:
        """Call a factory: ``fn()``, awaited if it returns an awaitable.

        With ``offload``, a function that is not async runs in one of the cache's worker
        threads, so a blocking factory doesn't stop the event loop.
        """
        if self.offload and not _is_async_callable(fn):
            loop = asyncio.get_running_loop()
            result = await loop.run_in_executor(self._pool(), fn)
        else:
            result = fn()
        if inspect.isawaitable(result):
            result = await result
        return result

    def _pool(self) -> concurrent.futures.ThreadPoolExecutor:
        with self._lock:
            self.check_open()
            if self._executor is None:
                self._executor = concurrent.futures.ThreadPoolExecutor(
                    thread_name_prefix="dataferry-factory"
                )
            return self._executor

    async def aclose(self) -> None:
        """Mark the cache closed; wait up to ``close_timeout`` s for its tasks, then cancel."""
        timeout = self.close_timeout
        self.closed = True
        loop = asyncio.get_running_loop()
        tasks = [t for t in self._tasks if not t.done()]
        mine = [t for t in tasks if t.get_loop() is loop]
        for task in tasks:  # tasks of another loop: that loop ends them, or has already
            if task.get_loop() is not loop and not task.get_loop().is_closed():
                task.get_loop().call_soon_threadsafe(task.cancel)
        if mine:
            _, late = await asyncio.wait(mine, timeout=timeout)
            for task in late:
                task.cancel()
            if late:
                await asyncio.wait(late)
                logger.warning("closing the cache cancelled %d unfinished factories", len(late))
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            # Worker threads may be inside a user's factory: don't wait for them here.
            executor.shutdown(wait=False, cancel_futures=True)


class Runtime:
    """Thread twin of :class:`AsyncRuntime`: sync work runs in the calling thread."""

    __slots__ = ("_executor", "_lock", "_pending", "close_timeout", "closed", "offload")

    def __init__(self, *, offload: bool, close_timeout: float) -> None:
        self.closed = False
        self.offload = offload  # nothing to offload: factories run in the calling thread
        self.close_timeout = _close_timeout(close_timeout)
        # Worker threads, started on first use: factories under a timeout, and completions
        # that go on after their caller stopped waiting.
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._pending: set[concurrent.futures.Future[Any]] = set()
        self._lock = threading.Lock()

    def _submit(self, fn: Callable[..., Any], /, *args: Any) -> concurrent.futures.Future[Any]:
        with self._lock:
            self.check_open()
            if self._executor is None:
                self._executor = concurrent.futures.ThreadPoolExecutor(
                    thread_name_prefix="dataferry-factory"
                )
            future = self._executor.submit(fn, *args)
            self._pending.add(future)
        future.add_done_callback(self._done)
        return future

    def _done(self, future: concurrent.futures.Future[Any]) -> None:
        with self._lock:
            self._pending.discard(future)

    def background(self, fn: Callable[..., Any], /, *args: Any) -> None:
        """Call ``fn(*args)`` in a worker thread the cache owns; failures are logged."""
        self._submit(fn, *args).add_done_callback(_log_failure)

    @staticmethod
    def sleep(seconds: float) -> None:
        """Wait ``seconds`` (blocks the calling thread)."""
        time.sleep(seconds)

    def start(self, fn: Callable[[], Any]) -> Run:
        """Start a factory in a worker thread the cache owns (see :meth:`AsyncRuntime.start`)."""
        return Run(self, self._submit(self.call, fn))

    def check_open(self) -> None:
        """Raise :class:`CacheClosedError` if the cache was closed."""
        if self.closed:
            raise CacheClosedError("this cache is closed; create a new one")

    def spawn(self, fn: Callable[..., Any], /, *args: Any) -> None:
        """Call ``fn(*args)`` in this thread: sync work has no background to go to."""
        fn(*args)

    @staticmethod
    def inline(fn: Callable[[], Any]) -> bool:
        """Sync code runs every factory here and now."""
        return True

    def begin(self, fn: Callable[[], Any]) -> Any:
        """Call a factory (sync code has nothing to hand over): its result."""
        return self.call(fn)

    def call(self, fn: Callable[[], Any]) -> Any:
        """Call a factory; an awaitable result is a mistake in sync code and is refused."""
        result = fn()
        if inspect.isawaitable(result):
            if inspect.iscoroutine(result):
                result.close()  # don't leak a "coroutine was never awaited" warning
            raise ConfigurationError(
                "the sync DataFerry got an async factory; use AsyncDataFerry or a sync function"
            )
        return result

    def close(self) -> None:
        """Mark the cache closed; wait up to ``close_timeout`` s for its worker threads."""
        with self._lock:
            self.closed = True
            executor, self._executor = self._executor, None
            pending = list(self._pending)
        if executor is None:
            return
        # Let running work finish within the bound (a factory can't be interrupted; a
        # completion may start more work, which close refuses), then drop what never started.
        _, late = concurrent.futures.wait(pending, timeout=self.close_timeout)
        executor.shutdown(wait=False, cancel_futures=True)
        if late:
            logger.warning("closing the cache left %d factories running", len(late))


def _log_failure(future: concurrent.futures.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        logger.error("background work of the cache failed", exc_info=future.exception())


class AsyncWorker:
    """One background job of a cache, run as a task of the event loop that started it.

    The owner calls :meth:`start` (under its own lock) when :attr:`running` is false or the
    task is gone (its loop ended); the job clears :attr:`running` itself (under the same lock)
    when it finds nothing left to do, so work put in meanwhile always has a job to run it.
    The job waits with :meth:`sleep`, which :meth:`wake` ends early, and stops when
    :attr:`stopping` is set. The worker keeps its task referenced (the garbage collector can't
    drop a pending one) and :meth:`stop` cancels it.
    """

    __slots__ = ("_job", "_task", "_wake", "running", "stopping")

    def __init__(self, job: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        self._job = job
        self._task: asyncio.Task[Any] | None = None
        self._wake: asyncio.Event | None = None
        self.running = False
        self.stopping = False

    def alive(self) -> bool:
        """Whether the job is running (or about to) in a loop that is still open."""
        task = self._task
        return task is not None and not task.done() and not task.get_loop().is_closed()

    def start(self) -> None:
        """Start the job in a task of the running event loop."""
        self.running = True
        self._wake = None
        self._task = asyncio.get_running_loop().create_task(self._main())

    async def _main(self) -> None:
        self._wake = asyncio.Event()
        try:
            await self._job()
        finally:
            # Only the current job may say none runs: an older one may end after a new start.
            if self._task is asyncio.current_task():
                self.running = False

    def wake(self) -> None:
        """End the job's current :meth:`sleep` now (from any loop or thread)."""
        wake, task = self._wake, self._task
        if wake is None or task is None:
            return  # not started yet: it looks for work before it first sleeps
        loop = task.get_loop()
        try:
            same = asyncio.get_running_loop() is loop
        except RuntimeError:
            same = False
        if same:
            wake.set()
        elif not loop.is_closed():
            loop.call_soon_threadsafe(wake.set)

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds``, or less if :meth:`wake` is called (called by the job only)."""
        wake = self._wake
        assert wake is not None
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(wake.wait(), seconds)
        wake.clear()

    async def stop(self, timeout: float) -> None:
        """Stop the job: cancel its task and wait (up to ``timeout`` s) for it to end."""
        self.stopping = True
        task = self._task
        if task is None or task.done():
            return
        loop = task.get_loop()
        if loop is asyncio.get_running_loop():
            task.cancel()
            await asyncio.wait([task], timeout=timeout)
        elif not loop.is_closed():  # another loop's task: that loop ends it
            loop.call_soon_threadsafe(task.cancel)


class Worker:
    """Thread twin of :class:`AsyncWorker`: the job runs in a daemon thread of its own."""

    __slots__ = ("_job", "_thread", "_wake", "running", "stopping")

    def __init__(self, job: Callable[[], Any]) -> None:
        self._job = job
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self.running = False
        self.stopping = False

    def alive(self) -> bool:
        """Whether the job's thread is running (or about to)."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    def start(self) -> None:
        """Start the job in a new daemon thread.

        Daemon: a cache that is never closed can't block the interpreter's exit (close it to
        have its queued writes drained).
        """
        self.running = True
        thread = threading.Thread(target=self._main, name="dataferry-l2-writer", daemon=True)
        self._thread = thread
        thread.start()

    def _main(self) -> None:
        try:
            self._job()
        finally:
            if self._thread is threading.current_thread():
                self.running = False

    def wake(self) -> None:
        """End the job's current :meth:`sleep` now."""
        self._wake.set()

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds``, or less if :meth:`wake` is called (called by the job only)."""
        self._wake.wait(seconds)
        self._wake.clear()

    def stop(self, timeout: float) -> None:
        """Stop the job: ask it to end and wait (up to ``timeout`` s) for its thread."""
        self.stopping = True
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)


# -- batching (the loader) ------------------------------------------------------------------------


class _AsyncBatch:
    """The keys of one async batch, and a future for each caller waiting for them.

    A future per caller rather than one shared future that each caller shields: cancelling a
    caller cancels its own future only, and waking a caller costs one step of the event loop
    instead of two (the shield's callback, then the caller), a third of a load's overhead.
    """

    __slots__ = ("full", "keys", "waiters")

    def __init__(self, loop: asyncio.AbstractEventLoop, timed: bool) -> None:
        self.keys: dict[str, None] = {}  # an ordered set: a key asked for twice is loaded once
        self.waiters: list[asyncio.Future[Any]] = []
        #: Done when the batch reached its size limit (only a timed batch waits for it).
        self.full: asyncio.Future[None] | None = loop.create_future() if timed else None

    def settle(self, result: Any, error: BaseException | None) -> None:
        """Hand ``result`` (or a copy of ``error`` each) to the callers still waiting."""
        if error is None:
            for fut in self.waiters:
                if not fut.done():
                    fut.set_result(result)
            return
        tb = error.__traceback__
        for fut in self.waiters:
            if fut.done():
                continue  # its caller was cancelled
            if isinstance(error, AsyncCancelled):
                fut.cancel()
            else:
                fut.set_exception(_rethrow(error, tb))
                fut.exception()  # retrieved: a caller gone meanwhile is no "never retrieved"


class AsyncBatcher:
    """Coalesces the keys that tasks ask for concurrently into one ``run(keys)`` per batch.

    The first key asked for in an iteration of the event loop opens a batch and schedules the
    task that runs it after the tasks already scheduled (every coroutine of one
    ``asyncio.gather``, say), so every key they ask for joins the batch. With ``window``
    > 0 the batch also waits that long for keys asked for later. A batch that reaches
    ``max_size`` keys goes at once, and later keys open the next one. Batches are per event
    loop (a cache may be used from several). ``run`` runs in a task the cache owns: a caller
    that is cancelled stops waiting, and the batch goes on for the others.
    """

    #: The window when none is given: one iteration of the event loop.
    DEFAULT_WINDOW = 0.0

    __slots__ = ("_lock", "_open", "_run", "_runtime", "max_size", "window")

    def __init__(
        self,
        run: Callable[[list[str]], Coroutine[Any, Any, Mapping[str, Any]]],
        runtime: AsyncRuntime,
        *,
        window: float | None,
        max_size: int | None,
    ) -> None:
        self._run = run
        self._runtime = runtime
        self.window = self.DEFAULT_WINDOW if window is None else window
        self.max_size = max_size
        self._open: dict[asyncio.AbstractEventLoop, _AsyncBatch] = {}
        # A real lock: loops in two threads may ask at the same time.
        self._lock = threading.Lock()

    async def get(self, keys: Iterable[str]) -> Mapping[str, Any]:
        """Wait for the batches that ``keys`` join; return what ``run`` returned for them.

        The mapping holds every key asked for that ``run`` returned (and may hold other keys
        of the same batches). An exception of ``run`` is raised here, in every caller.
        """
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[Any]] = []
        last: _AsyncBatch | None = None
        max_size = self.max_size
        with self._lock:
            for key in keys:
                batch = self._open.get(loop)
                if batch is None:
                    batch = self._open[loop] = _AsyncBatch(loop, self.window > 0)
                    # Through call_soon, not a task made here: an eager task factory (3.12+)
                    # would run the batch at once, with this one key (and under this lock).
                    loop.call_soon(self._runtime.spawn, self._dispatch, loop, batch)
                if batch is not last:
                    last = batch
                    fut = loop.create_future()
                    batch.waiters.append(fut)
                    futures.append(fut)
                batch.keys[key] = None
                if max_size is not None and len(batch.keys) >= max_size:
                    del self._open[loop]  # closed: the next key opens a new batch
                    if batch.full is not None:
                        batch.full.set_result(None)
        if len(futures) == 1:
            result: Mapping[str, Any] = await futures[0]
            return result
        found: dict[str, Any] = {}
        for fut in futures:
            found.update(await fut)
        return found

    async def _dispatch(self, loop: asyncio.AbstractEventLoop, batch: _AsyncBatch) -> None:
        if batch.full is not None:
            await asyncio.wait((batch.full,), timeout=self.window)
        with self._lock:
            if self._open.get(loop) is batch:
                del self._open[loop]
        try:
            result = await self._run(list(batch.keys))
        except AsyncCancelled as exc:
            # Only the cache's close (or the end of the loop) cancels a batch's task.
            if self._runtime.closed:
                batch.settle(None, CacheClosedError("the cache closed before the batch loaded"))
            else:
                batch.settle(None, exc)
            raise
        except BaseException as exc:
            batch.settle(None, exc)
            if not isinstance(exc, Exception):
                raise
        else:
            batch.settle(result, None)


class _Batch:
    """Thread twin of :class:`_AsyncBatch`."""

    __slots__ = ("busy", "full", "keys", "outcome")

    def __init__(self, busy: bool) -> None:
        self.keys: dict[str, None] = {}
        self.outcome = Outcome()
        self.full = threading.Event()
        #: Another batch of the batcher was loading when this one opened.
        self.busy = busy


class Batcher:
    """Thread twin of :class:`AsyncBatcher`: the keys that threads ask for within a window.

    The first thread to ask opens a batch and leads it: it waits ``window`` seconds (less if
    the batch reaches ``max_size`` keys) for other threads to add theirs, then runs the batch
    itself and hands the result to them; keys asked for once it has left open the next batch.
    Without a ``window`` (None), the batching is natural: the leader runs at once when no
    batch is loading, so a thread on its own never waits for company that isn't coming;
    while one is loading (threads are asking concurrently), it collects keys until a loading
    batch comes back, at most :data:`DEFAULT_WINDOW`. So a batch waits about one round trip,
    not a fixed millisecond (with 8 threads reading an L2 of ~80 µs round trips, a fixed 1 ms
    made every read wait for it). Nobody polls: the leader waits on a condition that a full
    batch and a finished one signal, the others on the batch's outcome.
    """

    #: Seconds a batch collects keys at most while another batch is loading, when no window
    #: is given.
    DEFAULT_WINDOW = 0.001

    __slots__ = (
        "_adaptive",
        "_changed",
        "_finished",
        "_loading",
        "_lock",
        "_open",
        "_run",
        "_runtime",
        "max_size",
        "window",
    )

    def __init__(
        self,
        run: Callable[[list[str]], Mapping[str, Any]],
        runtime: Runtime,
        *,
        window: float | None,
        max_size: int | None,
    ) -> None:
        self._run = run
        self._runtime = runtime
        self._adaptive = window is None
        self.window = self.DEFAULT_WINDOW if window is None else window
        self.max_size = max_size
        self._open: _Batch | None = None
        self._loading = 0  # batches running now
        self._finished = 0  # batches that came back, ever
        self._lock = threading.Lock()
        # Signalled (under _lock) when a batch fills up or one comes back.
        self._changed = threading.Condition(self._lock)

    def get(self, keys: Iterable[str]) -> Mapping[str, Any]:
        """Wait for the batches that ``keys`` join (running those this thread leads).

        Returns what ``run`` returned for them (see :meth:`AsyncBatcher.get`).
        """
        lead: list[_Batch] = []
        joined: list[_Batch] = []
        last: _Batch | None = None
        max_size = self.max_size
        with self._lock:
            for key in keys:
                batch = self._open
                if batch is None:
                    batch = self._open = _Batch(self._loading > 0)
                    lead.append(batch)
                elif batch is not last:
                    joined.append(batch)
                last = batch
                batch.keys[key] = None
                if max_size is not None and len(batch.keys) >= max_size:
                    self._open = None
                    batch.full.set()
                    self._changed.notify_all()
        # Run the batches this thread leads before waiting for any other: two threads that
        # each lead one batch and joined the other's never wait for each other.
        for i, batch in enumerate(lead):
            try:
                self._dispatch(batch)
            except BaseException as exc:  # KeyboardInterrupt...: the rest must not hang
                for rest in lead[i + 1 :]:
                    self._close(rest)
                    rest.outcome.settle(None, exc)
                raise
        batches = [*lead, *joined]
        if len(batches) == 1:
            result: Mapping[str, Any] = batches[0].outcome.wait(None)
            return result
        found: dict[str, Any] = {}
        for batch in batches:
            found.update(batch.outcome.wait(None))
        return found

    def _close(self, batch: _Batch) -> None:
        with self._lock:
            if self._open is batch:
                self._open = None

    def _dispatch(self, batch: _Batch) -> None:
        if self.window > 0 and not batch.full.is_set():
            if not self._adaptive:
                batch.full.wait(self.window)
            elif batch.busy:
                with self._changed:
                    finished = self._finished
                    self._changed.wait_for(
                        lambda: (
                            batch.full.is_set() or self._finished != finished or not self._loading
                        ),
                        timeout=self.window,
                    )
        with self._lock:
            if self._open is batch:
                self._open = None
            self._loading += 1
        try:
            result = self._run(list(batch.keys))
        except BaseException as exc:
            batch.outcome.settle(None, exc)
            if not isinstance(exc, Exception):
                raise
        else:
            batch.outcome.settle(result, None)
        finally:
            with self._lock:
                self._loading -= 1
                self._finished += 1
                self._changed.notify_all()
