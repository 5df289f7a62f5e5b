"""ConfigCache: a live, local copy of a subtree of JSON values.

Layout (see bindings/python/README.md):

    <root>                       the cache's root (need not exist yet)
    <root>/<KEY>                 a value: the node's data is JSON ("5000", "true", "{...}")
    <root>/<a>/<b>               nested nodes are keys too: "a/b"

A node with empty data holds no value (a folder). Data that is not JSON is taken as a string of
its UTF-8 text, so hand-written plain strings work.

The cache loads the subtree (pipelined reads), then follows ONE persistent recursive watch on
the root added with start_zxid = the zxid the load started at (a Sync): every change after it
is replayed, so nothing between the load and the watch is missed; each event re-reads the node
it names. Across reconnects the client resumes that watch from the last zxid it saw.
"""

from __future__ import annotations

import copy
import json
import logging
import threading
from dataclasses import dataclass
from typing import Any, Callable

from confab.errors import ConfabError, NoNodeError
from confab.models import EventType
from confab.recipes._util import RETRYABLE, join, retry

log = logging.getLogger("confab.recipes")


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING: Any = _Missing()


class ConfigKeyError(KeyError):
    """The key is not in the config (and no default was given)."""

    def __init__(self, key: str, root: str):
        super().__init__(key)
        self.key = key
        self.root = root

    def __str__(self) -> str:
        return f"config key {self.key!r} is not set under {self.root}"


class ConfigTypeError(TypeError):
    """A typed getter found a value of another type."""

    def __init__(self, key: str, expected: type, value: Any):
        self.key = key
        self.expected = expected
        self.value = value
        super().__init__(f"config key {key!r}: expected {_type_name(expected)}, got "
                         f"{type(value).__name__} {value!r}")


@dataclass(frozen=True)
class ConfigChange:
    key: str
    old: Any  # MISSING when the key was added
    new: Any  # MISSING when the key was removed
    zxid: int  # the change's event (0 for a full reload)

    @property
    def added(self) -> bool:
        return self.old is MISSING

    @property
    def removed(self) -> bool:
        return self.new is MISSING


def _type_name(t) -> str:
    if isinstance(t, tuple):
        return " or ".join(_type_name(x) for x in t)
    return getattr(t, "__name__", str(t))


def decode(data: bytes) -> Any:
    """A node's data as a config value (MISSING for empty data)."""
    if not data:
        return MISSING
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return data
    try:
        return json.loads(text)
    except ValueError:
        return text


def coerce(key: str, value: Any, expected) -> Any:
    """value if it is of the expected type (an int is a fine float, a bool is not an int)."""
    types = expected if isinstance(expected, tuple) else (expected,)
    for t in types:
        if t is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if t in (int, float) and isinstance(value, bool):
            continue
        if t is None or t is type(None):
            if value is None:
                return None
            continue
        if isinstance(value, t):
            return value
    raise ConfigTypeError(key, expected, value)


class ConfigCache:
    """A live copy of the JSON values under ``root``.

        cache = ConfigCache(client, "/superset/config").start()
        row_limit = cache.get("ROW_LIMIT", int, default=50000)
        cache.add_listener(lambda change: print(change.key, change.old, "->", change.new))
    """

    MISSING = MISSING

    def __init__(self, client, root: str):
        self._client = client
        self.root = "/" + root.strip("/") if root.strip("/") else "/"
        self._lock = threading.Lock()
        self._values: dict[str, Any] = {}
        self._listeners: list[tuple[Callable[[ConfigChange], None], str | None]] = []
        self._stream = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._closed = False
        self.zxid = 0  # the zxid of the last change applied

    # ---- Reading ------------------------------------------------------------------------------

    def get(self, key: str, type=None, default: Any = MISSING) -> Any:
        """The value of key; with a type, checked against it (ConfigTypeError naming the key, the
        expected type and the value). Missing: default, or ConfigKeyError when none is given."""
        with self._lock:
            value = self._values.get(key, MISSING)
        if value is MISSING:
            if default is MISSING:
                raise ConfigKeyError(key, self.root)
            return default
        if type is not None:
            value = coerce(key, value, type)
        return copy.deepcopy(value) if isinstance(value, (dict, list)) else value

    def __getitem__(self, key: str) -> Any:
        return self.get(key)

    def __contains__(self, key: str) -> bool:
        with self._lock:
            return key in self._values

    def keys(self) -> list[str]:
        with self._lock:
            return sorted(self._values)

    def as_dict(self) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._values)

    def add_listener(self, callback: Callable[[ConfigChange], None],
                     key: str | None = None) -> None:
        """callback(ConfigChange) after a value changes (only key's changes, when given). Runs on
        the cache's thread, in order."""
        with self._lock:
            self._listeners.append((callback, key))

    def remove_listener(self, callback) -> None:
        with self._lock:
            self._listeners = [(c, k) for c, k in self._listeners if c is not callback]

    # ---- Lifecycle ----------------------------------------------------------------------------

    def start(self, timeout: float | None = None) -> "ConfigCache":
        """Loads the subtree, then follows it; returns once loaded."""
        if self._thread is not None:
            return self
        first_zxid = self._load(notify=False)
        self._stream = self._client.watch(self.root, recursive=True, start_zxid=first_zxid,
                                          timeout=timeout)
        self._thread = threading.Thread(target=self._run, name=f"confab-config{self.root}",
                                        daemon=True)
        self._thread.start()
        return self

    def sync(self, timeout: float | None = None) -> bool:
        """Waits (bounded) until the cache reflects every write acknowledged before the call;
        False on timeout."""
        self._client.sync(timeout=timeout)
        # Every event of a change up to that zxid is queued before the sync's answer: mark
        # the queue here and wait until the cache thread reaches the mark.
        mark = threading.Event()
        self._stream._put(_Mark(mark))
        return mark.wait(timeout if timeout is not None else self._client.request_timeout)

    def close(self) -> None:
        self._closed = True
        if self._stream is not None:
            self._stream.close()
        if self._thread is not None and threading.current_thread() is not self._thread:
            self._thread.join(5.0)

    def __enter__(self) -> "ConfigCache":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- Following ----------------------------------------------------------------------------

    def _key(self, path: str) -> str:
        if self.root == "/":
            return path[1:]
        return path[len(self.root) + 1:]

    def _load(self, notify: bool) -> int:
        """Reads the whole subtree level by level (pipelined); replaces the values; returns the
        zxid the load started at (a Sync before the first read: every later change is newer)."""
        def attempt():
            first = self._client.sync()
            values: dict[str, Any] = {}
            level = [self.root]
            while level:
                reads = [(p, self._client.get_async(p), self._client.get_children_async(p))
                         for p in level]
                level = []
                for path, got_f, children_f in reads:
                    try:
                        got = got_f.result(self._client.request_timeout)
                        children = children_f.result(self._client.request_timeout)
                    except NoNodeError:
                        continue  # gone meanwhile (or no root yet): the watch will say
                    if path != self.root:
                        value = decode(got.data)
                        if value is not MISSING:
                            values[self._key(path)] = value
                    level.extend(join(path, c) for c in children)
            return first, values

        first, values = retry(self._client, attempt)
        with self._lock:
            old = self._values
            self._values = values
        if notify:
            for key in sorted(set(old) | set(values)):
                before, after = old.get(key, MISSING), values.get(key, MISSING)
                if before != after or type(before) is not type(after):
                    self._notify(ConfigChange(key, before, after, 0))
        return first

    def _run(self) -> None:
        while not self._closed:
            item = self._stream.poll(0.5)
            if item is None:
                if self._stream._closed:
                    return
                continue
            # A burst is handled as one batch: one pipelined read per node it names.
            batch = [item]
            while len(batch) < 1000 and not isinstance(batch[-1], _Mark):
                more = self._stream.poll(0)
                if more is None:
                    break
                batch.append(more)
            events = [e for e in batch if not isinstance(e, _Mark)]
            try:
                self._apply(events)
            except ConfabError as e:  # could not re-read even with retries: reload
                log.warning("config cache %s: %s; reloading", self.root, e)
                self._reload()
            if isinstance(batch[-1], _Mark):
                batch[-1].event.set()

    def _reload(self) -> None:
        while not self._closed:
            try:
                self._load(notify=True)
                return
            except ConfabError as e:
                log.warning("config cache %s: reload failed: %s", self.root, e)
                self._client.wait_connected(1.0)

    def _apply(self, events: list) -> None:
        """Applies a batch of events in order. Each node they name is read once, after all of
        them arrived, so every read reflects a state at or after its events."""
        if any(e.type == EventType.WATCHES_LOST for e in events):
            self._reload()
            return
        events = [e for e in events if e.path != self.root]  # the root holds no value
        to_read = list(dict.fromkeys(e.path for e in events
                                     if e.type != EventType.NODE_DELETED))
        read = retry(self._client, self._read_many, to_read)
        for event in events:
            key = self._key(event.path)
            new = MISSING if event.type == EventType.NODE_DELETED else read[event.path]
            with self._lock:
                old = self._values.get(key, MISSING)
                if new is MISSING:
                    self._values.pop(key, None)
                else:
                    self._values[key] = new
                self.zxid = max(self.zxid, event.zxid)
            if old != new or type(old) is not type(new):
                self._notify(ConfigChange(key, old, new, event.zxid))

    def _read_many(self, paths: list[str]) -> dict[str, Any]:
        futures = [(p, self._client.get_async(p)) for p in paths]
        out = {}
        for path, future in futures:
            try:
                out[path] = decode(future.result(self._client.request_timeout).data)
            except NoNodeError:
                out[path] = MISSING  # deleted since: its NODE_DELETED is in this batch or next
        return out

    def _notify(self, change: ConfigChange) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for callback, key in listeners:
            if key is not None and key != change.key:
                continue
            try:
                callback(change)
            except Exception:  # noqa: BLE001
                log.exception("config listener failed")


class _Mark:
    __slots__ = ("event",)

    def __init__(self, event: threading.Event):
        self.event = event


__all__ = ["ConfigCache", "ConfigChange", "ConfigKeyError", "ConfigTypeError", "MISSING",
           "RETRYABLE"]
