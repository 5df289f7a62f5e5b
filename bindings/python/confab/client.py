"""The Confab client: one session over one bidirectional Session stream.

Threads (all daemons, all ended by close()):
  confab-conn      connects, resumes the session after a stream loss, sends heartbeats
  confab-read      one per stream: reads batches, matches responses to futures, routes events
  confab-events    runs watch and state callbacks, in order (never the reader: a callback may
                   call the client synchronously)
gRPC's own thread consumes the request iterator, which batches everything queued since the
last write into one ClientMessage.

Watches across reconnects: the server drops a stream's watches when the stream goes, so after
every (re)connect the client re-adds each registration with AddWatch(start_zxid) where
start_zxid comes from S, the last zxid this client saw in an event or in a response that
reflects the server's state (reads, writes, AddWatch; not heartbeats or SessionOpened). The
server sends every watch event before any response reflecting its change, so every event with a
zxid <= S for our watches has arrived. Registrations are re-added from S - 1 (so events sharing
S's zxid that were lost in transit come back), the events of the re-adds are buffered until the
last re-add is answered, then deduplicated (by zxid, type, path; against what was seen at S as
well), sorted by zxid and routed: nothing missed, nothing twice, in order.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeoutError
from typing import Callable, Iterable

import grpc

from confab._proto import pb, pb_grpc
from confab.errors import (
    ClientClosedError,
    ConfabError,
    ConnectionLossError,
    NodeExistsError,
    NoNodeError,
    OperationTimeoutError,
    SessionExpiredError,
    TooLargeError,
    UnavailableError,
    error_for,
)
from confab.models import (
    CheckResult,
    ConnectionState,
    CreateResult,
    DeleteResult,
    EventType,
    GetResult,
    Op,
    SetResult,
    Stat,
    WatchEvent,
    WatchKind,
    _to_bytes,
)

log = logging.getLogger("confab")

_END = object()  # ends a request iterator, an event queue or the dispatch thread
_BATCH_BYTES = 1 << 20  # a ClientMessage carries at most this much (unless one request is more)
_BATCH_REQUESTS = 512

_EVT = pb.EventType
_DATA_TYPES = (_EVT.NODE_CREATED, _EVT.NODE_DELETED, _EVT.NODE_DATA_CHANGED)
_CHILD_TYPES = (_EVT.NODE_CHILDREN_CHANGED, _EVT.NODE_DELETED)


def _parse_endpoints(endpoints) -> list[str]:
    if isinstance(endpoints, str):
        endpoints = endpoints.split(",")
    out = [e.strip() for e in endpoints if e and e.strip()]
    if not out:
        raise ValueError("Client needs at least one endpoint (host:port)")
    return out


def _ancestors_and_self(path: str) -> Iterable[str]:
    yield path
    while path != "/":
        path = path.rsplit("/", 1)[0] or "/"
        yield path


def _response_zxid(r) -> int:
    """The zxid of the state a successful response reflects (0 when it reflects none)."""
    which = r.WhichOneof("response")
    if which in ("create", "get", "set", "delete", "exists", "get_children", "multi", "sync",
                 "add_watch", "closed"):
        return getattr(r, which).zxid
    return 0


class _Stream:
    """One Session stream: a channel, the gRPC call and the queue feeding its request iterator."""

    def __init__(self, endpoint: str, channel_options):
        self.endpoint = endpoint
        self.channel = grpc.insecure_channel(endpoint, options=channel_options)
        self.outq: queue.SimpleQueue = queue.SimpleQueue()
        self.call = pb_grpc.CoordinationStub(self.channel).Session(self._requests())
        self.last_received = time.monotonic()
        self.last_sent = time.monotonic()

    def _requests(self):
        while True:
            item = self.outq.get()
            if item is _END:
                return
            batch, size, end = [item], item.ByteSize(), False
            while len(batch) < _BATCH_REQUESTS and size < _BATCH_BYTES:
                try:
                    item = self.outq.get_nowait()
                except queue.Empty:
                    break
                if item is _END:
                    end = True
                    break
                batch.append(item)
                size += item.ByteSize()
            yield pb.ClientMessage(requests=batch)
            if end:
                return

    def send(self, request) -> None:
        self.last_sent = time.monotonic()
        self.outq.put(request)

    def close(self) -> None:
        self.outq.put(_END)
        try:
            self.call.cancel()
        except Exception:  # pragma: no cover
            pass
        try:
            self.channel.close()
        except Exception:  # pragma: no cover
            pass


class _Pending:
    __slots__ = ("request", "future", "convert", "hook", "stream", "path", "abandoned", "pre")

    def __init__(self, request, convert, hook, path, pre=None):
        self.pre = pre  # run under the lock right before the request is sent
        self.request = request
        self.future: Future = Future()
        self.convert = convert  # response -> value (outside the client lock)
        self.hook = hook  # response -> None, under the lock, in stream order (watch bookkeeping)
        self.stream: _Stream | None = None
        self.path = path
        self.abandoned = False


class _Listener:
    """A consumer of one registration's events: a callback or a WatchStream."""

    __slots__ = ("callback", "stream", "since", "kind", "path", "hw", "hw_keys", "buffer",
                 "removed")

    def __init__(self, kind: int, path: str, since: int, callback=None, stream=None):
        self.kind = kind
        self.path = path
        self.since = since  # only events after this zxid (the registration's response)
        self.callback = callback
        self.stream = stream
        # Each event once, in zxid order: the highest zxid delivered and the events seen at it.
        self.hw = 0
        self.hw_keys: set = set()
        # While an AddWatch(start_zxid) for this listener is answered: replayed and live events
        # are kept here, then sorted and deduplicated.
        self.buffer: list | None = None
        self.removed = False  # by its owner (or its AddWatch failed): never attach it again


class _Registration:
    """A watch this client holds on the server: one per (path, kind)."""

    __slots__ = ("path", "kind", "zxid", "listeners")

    def __init__(self, path: str, kind: int, zxid: int):
        self.path = path
        self.kind = kind
        self.zxid = zxid  # the zxid it was registered at
        self.listeners: list[_Listener] = []

    @property
    def one_shot(self) -> bool:
        return self.kind in (pb.DATA_WATCH, pb.CHILD_WATCH)

    def matches(self, etype: int, path: str) -> bool:
        if self.kind == pb.DATA_WATCH:
            return path == self.path and etype in _DATA_TYPES
        if self.kind == pb.CHILD_WATCH:
            return path == self.path and etype in _CHILD_TYPES
        if self.kind == pb.PERSISTENT_WATCH:
            return path == self.path
        return etype in _DATA_TYPES and (
            path == self.path or self.path == "/" or path.startswith(self.path + "/"))


class WatchHandle:
    """A persistent watch delivering to a callback; remove() ends it."""

    def __init__(self, client: "Client", listener: _Listener):
        self._client = client
        self._listener = listener

    @property
    def path(self) -> str:
        return self._listener.path

    def remove(self) -> None:
        self._client._remove_listener(self._listener)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.remove()


class WatchStream:
    """A persistent watch as an iterator of WatchEvent. Iteration ends when close() is called or
    the client closes. poll(timeout) waits a bounded time (None when nothing came)."""

    def __init__(self, client: "Client", path: str, kind: int):
        self._client = client
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = False
        self._listener: _Listener | None = None
        self.path = path
        self.kind = WatchKind(kind)

    def _put(self, item) -> None:
        self._queue.put(item)

    def poll(self, timeout: float | None = None) -> WatchEvent | None:
        if self._closed and self._queue.empty():
            return None
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if item is _END:
            self._closed = True
            self._queue.put(_END)  # later calls end too
            return None
        return item

    def __iter__(self):
        return self

    def __next__(self) -> WatchEvent:
        if self._closed and self._queue.empty():
            raise StopIteration
        item = self._queue.get()
        if item is _END:
            self._closed = True
            self._queue.put(_END)
            raise StopIteration
        return item

    def close(self) -> None:
        if self._listener is not None:
            self._client._remove_listener(self._listener)
        self._queue.put(_END)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Client:
    """A Confab session.

    ``endpoints``: "host:port" or a comma-separated list (or a list); on a stream loss the
    client moves to the next one and resumes the session there. ``session_timeout`` (seconds)
    is requested from the server, which clamps it. ``request_timeout`` bounds every call
    (default: the session timeout); ``connect_timeout`` bounds the constructor.
    ``session_id`` resumes an existing session instead of opening one (SessionExpiredError if it
    is gone).

    Every call has a ``*_async`` twin returning a concurrent.futures.Future, so many requests
    can be in flight on the stream; responses come back in request order. Future callbacks
    (add_done_callback) run on the client's reader thread: keep them short and never wait on
    the client in them. Watch and state callbacks run on the client's event thread, in order.
    """

    def __init__(self, endpoints="127.0.0.1:2281", session_timeout: float = 10.0, *,
                 request_timeout: float | None = None, connect_timeout: float | None = None,
                 session_id: int = 0, max_request_bytes: int = 4 << 20):
        self._endpoints = _parse_endpoints(endpoints)
        self._requested_timeout_ms = max(1, int(session_timeout * 1000))
        self._timeout_ms = self._requested_timeout_ms
        self.request_timeout = request_timeout if request_timeout is not None else session_timeout
        self._max_request_bytes = max_request_bytes
        self._channel_options = [
            ("grpc.max_receive_message_length", -1),
            ("grpc.max_send_message_length", -1),
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.min_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", 1000),
            ("grpc.enable_retries", 0),
        ]

        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._pending: dict[int, _Pending] = {}
        self._backlog: list[_Pending] = []  # submitted while not connected; sent on connect
        self._stream: _Stream | None = None
        self._connected = False
        self._ever_connected = False
        self._closing = False
        self._closed = False
        self._session_id = session_id
        self._endpoint_index = 0
        self._regs: dict[tuple[str, int], _Registration] = {}
        self._state_listeners: list[Callable[[ConnectionState], None]] = []
        self.state: ConnectionState | None = None
        # S, the last zxid seen (see the module doc), and the events seen at exactly S.
        self._last_zxid = 0
        self._at_last: set = set()
        # Re-adding watches after a connect: events are buffered until the last re-add answers.
        self._resync_last_rid = 0
        self._resync_floor = 0
        self._resync_buffer: list = []
        self._resync_seen: set = set()
        self._resync_missed: list[_Registration] = []

        self._connected_cv = threading.Condition(self._lock)
        self._wake = threading.Event()
        self._dispatch_q: queue.SimpleQueue = queue.SimpleQueue()
        self._dispatch_thread = threading.Thread(target=self._dispatch_loop, name="confab-events",
                                                 daemon=True)
        self._dispatch_thread.start()
        self._first_error: ConfabError | None = None
        self._conn_thread = threading.Thread(target=self._conn_loop, name="confab-conn",
                                             daemon=True)
        self._conn_thread.start()

        deadline = time.monotonic() + (connect_timeout if connect_timeout is not None
                                       else max(session_timeout, 5.0))
        with self._lock:
            while not self._connected and self._first_error is None:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._connected_cv.wait(left)
            error, connected = self._first_error, self._connected
        if not connected:
            self.close()
            if error is not None:
                raise error
            raise UnavailableError(f"could not open a session on {','.join(self._endpoints)}")

    # ---- Properties and lifecycle -------------------------------------------------------------

    @property
    def session_id(self) -> int:
        return self._session_id

    @property
    def session_timeout(self) -> float:
        """The negotiated session timeout, in seconds."""
        return self._timeout_ms / 1000.0

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def last_zxid(self) -> int:
        """The last zxid this client saw (events and responses reflecting the server's state)."""
        return self._last_zxid

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def add_state_listener(self, listener: Callable[[ConnectionState], None]) -> None:
        """listener(state) on the event thread for every change: SUSPENDED, RECONNECTED, LOST,
        CLOSED."""
        with self._lock:
            self._state_listeners.append(listener)

    def remove_state_listener(self, listener) -> None:
        with self._lock:
            if listener in self._state_listeners:
                self._state_listeners.remove(listener)

    def wait_connected(self, timeout: float | None = None) -> bool:
        """Waits (bounded) until the client has a session on a stream; False on timeout."""
        deadline = time.monotonic() + (timeout if timeout is not None else self.request_timeout)
        with self._lock:
            while not self._connected and not self._closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._connected_cv.wait(left)
            return self._connected

    def close(self, timeout: float = 5.0) -> None:
        """Closes the session (its ephemerals go) and the stream; idempotent."""
        with self._lock:
            if self._closing:
                return
            self._closing = True
            connected = self._connected
        if connected:
            try:
                fut = self._submit(pb.SessionRequest(close=pb.CloseSession()), None, None, "",
                                   allow_closing=True)
                fut.result(timeout)
            except Exception as e:  # noqa: BLE001 - best effort: the session expires anyway
                log.debug("closing the session: %s", e)
        with self._lock:
            self._closed = True
            self._connected = False
            stream, self._stream = self._stream, None
            failed = list(self._pending.values())
            self._pending.clear()
            self._backlog.clear()
            streams = [li.stream for r in self._regs.values() for li in r.listeners if li.stream]
            self._regs.clear()
            self._connected_cv.notify_all()
        for p in failed:
            if not p.future.done():
                p.future.set_exception(ClientClosedError("the client is closed"))
        if stream is not None:
            stream.close()
        for s in streams:
            s._put(_END)
        self._wake.set()
        if threading.current_thread() is not self._conn_thread:
            self._conn_thread.join(timeout)
        self._set_state(ConnectionState.CLOSED)
        self._dispatch_q.put(_END)
        if threading.current_thread() is not self._dispatch_thread:
            self._dispatch_thread.join(timeout)

    # ---- Operations ---------------------------------------------------------------------------

    def create(self, path: str, data: bytes | str = b"", *, ephemeral: bool = False,
               sequential: bool = False, make_parents: bool = False,
               timeout: float | None = None) -> CreateResult:
        """Creates a node; returns its path (with the sequence suffix when sequential) and Stat.
        make_parents creates missing ancestors as persistent nodes."""
        try:
            return self._wait(self.create_async(path, data, ephemeral=ephemeral,
                                                sequential=sequential), timeout)
        except NoNodeError:
            if not make_parents or path.count("/") < 2:
                raise
        # A sequential create may name just the parent ("/queue/").
        parent = path[:-1] if path.endswith("/") else path.rsplit("/", 1)[0]
        self.ensure_path(parent, timeout=timeout)
        return self._wait(self.create_async(path, data, ephemeral=ephemeral,
                                            sequential=sequential), timeout)

    def create_async(self, path: str, data: bytes | str = b"", *, ephemeral: bool = False,
                     sequential: bool = False) -> Future:
        req = pb.SessionRequest(create=pb.CreateRequest(
            path=path, data=_to_bytes(data), mode=_create_mode(ephemeral, sequential)))
        return self._submit(req, lambda r: CreateResult(r.create.path,
                                                        Stat._from_proto(r.create.stat)), None,
                            path)

    def ensure_path(self, path: str, timeout: float | None = None) -> None:
        """Creates path and its missing ancestors (persistent, empty); existing ones are fine."""
        parts = [p for p in path.split("/") if p]
        futures = [self.create_async("/" + "/".join(parts[:i + 1])) for i in range(len(parts))]
        for f in futures:
            try:
                self._wait(f, timeout)
            except NodeExistsError:
                pass

    def get(self, path: str, watch: Callable[[WatchEvent], None] | None = None,
            timeout: float | None = None) -> GetResult:
        """The node's data and Stat. watch: a one-shot callback for its next data change or
        deletion."""
        return self._wait(self.get_async(path, watch), timeout)

    def get_async(self, path: str, watch=None) -> Future:
        req = pb.SessionRequest(get=pb.GetRequest(path=path, watch=watch is not None))
        return self._submit(
            req, lambda r: GetResult(r.get.data, Stat._from_proto(r.get.stat), r.get.zxid),
            self._one_shot_hook(path, pb.DATA_WATCH, watch, lambda r: r.get.zxid), path)

    def exists(self, path: str, watch: Callable[[WatchEvent], None] | None = None,
               timeout: float | None = None) -> Stat | None:
        """The node's Stat, or None. watch: one-shot, fires on creation, data change, deletion."""
        return self._wait(self.exists_async(path, watch), timeout)

    def exists_async(self, path: str, watch=None) -> Future:
        req = pb.SessionRequest(exists=pb.ExistsRequest(path=path, watch=watch is not None))
        return self._submit(
            req, lambda r: Stat._from_proto(r.exists.stat) if r.exists.exists else None,
            self._one_shot_hook(path, pb.DATA_WATCH, watch, lambda r: r.exists.zxid), path)

    def set(self, path: str, data: bytes | str, version: int | None = None,
            timeout: float | None = None) -> Stat:
        """Sets the data (only if the node is at `version`, when given); returns the new Stat."""
        return self._wait(self.set_async(path, data, version), timeout)

    def set_async(self, path: str, data: bytes | str, version: int | None = None) -> Future:
        req = pb.SessionRequest(set=pb.SetRequest(path=path, data=_to_bytes(data)))
        if version is not None:
            req.set.version = version
        return self._submit(req, lambda r: Stat._from_proto(r.set.stat), None, path)

    def delete(self, path: str, version: int | None = None, *, recursive: bool = False,
               timeout: float | None = None) -> int:
        """Deletes the node (only at `version`, when given); returns the zxid of the delete.
        recursive deletes the subtree first (not atomically)."""
        if recursive:
            try:
                children = self.get_children(path, timeout=timeout)
            except NoNodeError:
                if version is None:
                    return 0
                raise
            for child in children:
                try:
                    self.delete(_join(path, child), recursive=True, timeout=timeout)
                except NoNodeError:
                    pass
        return self._wait(self.delete_async(path, version), timeout)

    def delete_async(self, path: str, version: int | None = None) -> Future:
        req = pb.SessionRequest(delete=pb.DeleteRequest(path=path))
        if version is not None:
            req.delete.version = version
        return self._submit(req, lambda r: getattr(r, "delete").zxid, None, path)

    def get_children(self, path: str, watch: Callable[[WatchEvent], None] | None = None,
                     timeout: float | None = None) -> list[str]:
        """The children's names, sorted. watch: one-shot, fires when the children change or the
        node is deleted."""
        return self._wait(self.get_children_async(path, watch), timeout)

    def get_children_async(self, path: str, watch=None) -> Future:
        req = pb.SessionRequest(get_children=pb.GetChildrenRequest(path=path,
                                                                   watch=watch is not None))
        return self._submit(req, lambda r: list(r.get_children.children),
                            self._one_shot_hook(path, pb.CHILD_WATCH, watch,
                                                lambda r: r.get_children.zxid), path)

    def multi(self, ops: list[Op], timeout: float | None = None) -> list:
        """Applies every op at one zxid, or none. Returns one result per op (CreateResult,
        SetResult, DeleteResult, CheckResult). On failure raises the failing op's error, with
        .failed_op (its index) and .results (per op: the error, RuntimeInconsistencyError for
        the ones rolled back)."""
        return self._wait(self.multi_async(ops), timeout)

    def multi_async(self, ops: list[Op]) -> Future:
        req = pb.SessionRequest(multi=pb.MultiRequest(ops=[_op_to_proto(op) for op in ops]))
        return self._submit(req, lambda r: [_op_result(x) for x in r.multi.results], None,
                            ops[0].path if ops else "")

    def sync(self, path: str = "", timeout: float | None = None) -> int:
        """Returns a zxid at or after every write acknowledged before the call."""
        return self._wait(self.sync_async(path), timeout)

    def sync_async(self, path: str = "") -> Future:
        return self._submit(pb.SessionRequest(sync=pb.SyncRequest(path=path)),
                            lambda r: r.sync.zxid, None, path)

    # ---- Persistent watches -------------------------------------------------------------------

    def add_watch(self, path: str, callback: Callable[[WatchEvent], None], *,
                  recursive: bool = False, start_zxid: int = 0,
                  timeout: float | None = None) -> WatchHandle:
        """A persistent watch calling callback(event) until removed: data and child events of
        the node, or with recursive=True created/deleted/data events of its whole subtree.
        start_zxid: first deliver every matching change after that zxid (e.g. the zxid of a
        read), so that nothing between a read and the watch is missed."""
        kind = pb.PERSISTENT_RECURSIVE_WATCH if recursive else pb.PERSISTENT_WATCH
        listener = _Listener(kind, path, start_zxid, callback=callback)
        self._add_persistent(listener, start_zxid, timeout)
        return WatchHandle(self, listener)

    def watch(self, path: str, *, recursive: bool = False, start_zxid: int = 0,
              timeout: float | None = None) -> WatchStream:
        """A persistent watch as an iterator: ``for event in client.watch(path, recursive=True)``.
        Use poll(timeout) for a bounded wait and close() (or a with block) to end it.
        start_zxid as for add_watch."""
        kind = pb.PERSISTENT_RECURSIVE_WATCH if recursive else pb.PERSISTENT_WATCH
        stream = WatchStream(self, path, kind)
        listener = _Listener(kind, path, start_zxid, stream=stream)
        stream._listener = listener
        self._add_persistent(listener, start_zxid, timeout)
        return stream

    def _add_persistent(self, listener: _Listener, start_zxid: int, timeout) -> None:
        key = (listener.path, listener.kind)

        def attach():  # under the lock
            reg = self._regs.get(key)
            if reg is None:
                reg = self._regs[key] = _Registration(listener.path, listener.kind,
                                                      start_zxid)
            reg.listeners.append(listener)

        def pre():  # with start_zxid: listen (buffered) before the replay starts arriving
            listener.buffer = []
            attach()

        def hook(r):  # under the lock, in stream order
            if listener.removed or (r.HasField("error") and r.error.code != pb.OK):
                self._detach_locked(listener)
                listener.buffer = None
                return
            if not start_zxid:
                listener.since = r.add_watch.zxid
                attach()
                return
            if r.add_watch.events_missed:
                self._deliver_to_locked(listener, WatchEvent(
                    EventType.WATCHES_LOST, listener.path, r.add_watch.zxid))
            self._flush_listener_locked(listener)

        req = pb.SessionRequest(add_watch=pb.AddWatchRequest(
            path=listener.path, kind=listener.kind, start_zxid=start_zxid))
        future = self._submit(req, lambda r: None, hook, listener.path,
                              pre=pre if start_zxid else None)
        try:
            self._wait(future, timeout)
        except BaseException:
            self._remove_listener(listener)
            raise

    def _detach_locked(self, listener: _Listener) -> bool:
        """Removes listener from its registration; True when that was the registration's last."""
        key = (listener.path, listener.kind)
        reg = self._regs.get(key)
        if reg is None or listener not in reg.listeners:
            return False
        reg.listeners.remove(listener)
        if reg.listeners:
            return False
        del self._regs[key]
        return True

    def _remove_listener(self, listener: _Listener) -> None:
        with self._lock:
            listener.removed = True
            send = self._detach_locked(listener) and self._connected and not self._closing
        if send:
            req = pb.SessionRequest(remove_watch=pb.RemoveWatchRequest(path=listener.path,
                                                                       kind=listener.kind))
            try:
                self._submit(req, None, None, listener.path)  # fire and forget
            except ConfabError:
                pass

    def _one_shot_hook(self, path: str, kind: int, callback, zxid_of):
        if callback is None:
            return None

        def hook(r):  # the watch exists on the server once the read succeeded
            if r.HasField("error") and r.error.code != pb.OK:
                return
            zxid = zxid_of(r)
            reg = self._regs.get((path, kind))
            if reg is None:
                reg = self._regs[(path, kind)] = _Registration(path, kind, zxid)
            reg.listeners.append(_Listener(kind, path, zxid, callback=callback))

        return hook

    # ---- Requests and responses ---------------------------------------------------------------

    def _wait(self, future: Future, timeout: float | None):
        t = self.request_timeout if timeout is None else timeout
        try:
            return future.result(t)
        except FutureTimeoutError:
            pending = getattr(future, "_confab_pending", None)
            if pending is not None:
                pending.abandoned = True  # not sent yet? then never
            raise OperationTimeoutError(f"no response within {t:.3g} s") from None

    def _submit(self, request, convert, hook, path: str, *, allow_closing: bool = False,
                pre=None) -> Future:
        if request.ByteSize() > self._max_request_bytes:
            raise TooLargeError(f"request for {path} is {request.ByteSize()} bytes; this "
                                f"client's limit is {self._max_request_bytes}", path)
        p = _Pending(request, convert, hook, path, pre)
        p.future._confab_pending = p  # type: ignore[attr-defined]
        with self._lock:
            if self._closed or (self._closing and not allow_closing):
                raise ClientClosedError("the client is closed", path)
            request.request_id = next(self._ids)
            self._pending[request.request_id] = p
            if self._connected and self._stream is not None:
                p.stream = self._stream
                if pre is not None:
                    pre()
                self._stream.send(request)
            else:
                self._backlog.append(p)
        return p.future

    def _send_internal_locked(self, stream: _Stream, request, hook=None) -> _Pending:
        p = _Pending(request, None, hook, "")
        request.request_id = next(self._ids)
        p.stream = stream
        self._pending[request.request_id] = p
        stream.send(request)
        return p

    def _reader(self, stream: _Stream) -> None:
        error = None
        try:
            for message in stream.call:
                stream.last_received = time.monotonic()
                self._on_message(stream, message)
        except grpc.RpcError as e:
            error = e
        except Exception as e:  # pragma: no cover - a bug: do not leave the stream half-dead
            log.exception("confab: reading the session stream")
            error = e
        self._on_stream_lost(stream, error)

    def _on_message(self, stream: _Stream, message) -> None:
        done = []
        expired_notice = False
        with self._lock:
            if stream is not self._stream:
                return
            for r in message.responses:
                if r.request_id == 0:
                    if r.HasField("event"):
                        self._on_event_locked(r.event)
                    elif r.error.code == pb.SESSION_EXPIRED and not self._closing:
                        expired_notice = True
                    continue
                p = self._pending.pop(r.request_id, None)
                ok = not (r.HasField("error") and r.error.code != pb.OK)
                if ok and not self._resync_last_rid:  # re-adds count once all are answered
                    z = _response_zxid(r)
                    if z > self._last_zxid:
                        self._last_zxid, self._at_last = z, set()
                if p is not None:
                    if p.hook is not None:
                        p.hook(r)
                    done.append((p, r, ok))
                if r.request_id == self._resync_last_rid:
                    self._finish_resync_locked(r)
        for p, r, ok in done:
            self._resolve(p, r, ok)
        if expired_notice:
            self._on_session_expired(stream)

    def _resolve(self, p: _Pending, r, ok: bool) -> None:
        if p.future.done():
            return
        if p.convert is None:  # internal requests look at the raw response, errors included
            p.future.set_result(r)
            return
        if not ok:
            e = r.error
            is_multi = p.request.WhichOneof("request") == "multi"
            exc = error_for(pb.ErrorCode.Name(e.code), e.message, e.path or p.path,
                            e.failed_op if is_multi else -1)
            if r.HasField("multi"):
                exc.results = [_op_result_or_error(x) for x in r.multi.results]
            p.future.set_exception(exc)
            return
        try:
            p.future.set_result(p.convert(r))
        except Exception as e:  # pragma: no cover - a conversion bug
            p.future.set_exception(e)

    # ---- Events -------------------------------------------------------------------------------

    def _on_event_locked(self, ev) -> None:
        key = (ev.zxid, ev.type, ev.path)
        if self._resync_last_rid:
            # Re-adding watches: keep each change once, route them all in zxid order at the end.
            if ev.zxid < self._resync_floor or key in self._resync_seen:
                return
            self._resync_seen.add(key)
            self._resync_buffer.append(ev)
            return
        self._route_locked(ev)

    def _route_locked(self, ev) -> None:
        key = (ev.zxid, ev.type, ev.path)
        if ev.zxid > self._last_zxid:
            self._last_zxid, self._at_last = ev.zxid, {key}
        elif ev.zxid == self._last_zxid:
            self._at_last.add(key)
        if ev.type == _EVT.WATCHES_LOST:
            # The server dropped this session's watches: tell everyone, re-add the persistent.
            for reg in list(self._regs.values()):
                self._deliver_locked(reg, WatchEvent(EventType.WATCHES_LOST, reg.path, ev.zxid))
                if reg.one_shot:
                    del self._regs[(reg.path, reg.kind)]
                elif self._stream is not None:
                    self._send_internal_locked(self._stream, pb.SessionRequest(
                        add_watch=pb.AddWatchRequest(path=reg.path, kind=reg.kind)))
            return
        keys = [(ev.path, pb.DATA_WATCH), (ev.path, pb.CHILD_WATCH), (ev.path, pb.PERSISTENT_WATCH)]
        keys += [(a, pb.PERSISTENT_RECURSIVE_WATCH) for a in _ancestors_and_self(ev.path)]
        for k in keys:
            reg = self._regs.get(k)
            if reg is None or not reg.matches(ev.type, ev.path):
                continue
            if reg.one_shot:
                if ev.zxid <= reg.zxid:
                    continue  # a replay of a change from before this one-shot watch was set
                del self._regs[k]
            for listener in list(reg.listeners):
                self._offer_locked(listener, ev)

    def _offer_locked(self, listener: _Listener, ev) -> None:
        """Delivers a raw event to one listener: after its start, once, in zxid order."""
        if ev.zxid <= listener.since:
            return
        if listener.buffer is not None:
            listener.buffer.append(ev)
            return
        key = (ev.type, ev.path)
        if ev.zxid < listener.hw or (ev.zxid == listener.hw and key in listener.hw_keys):
            return
        if ev.zxid > listener.hw:
            listener.hw, listener.hw_keys = ev.zxid, {key}
        else:
            listener.hw_keys.add(key)
        self._deliver_to_locked(listener, WatchEvent(EventType(ev.type), ev.path, ev.zxid))

    def _flush_listener_locked(self, listener: _Listener) -> None:
        buffered, listener.buffer = sorted(listener.buffer or [], key=lambda e: e.zxid), None
        for ev in buffered:
            self._offer_locked(listener, ev)

    def _deliver_locked(self, reg: _Registration, event: WatchEvent) -> None:
        for listener in reg.listeners:
            self._deliver_to_locked(listener, event)

    def _deliver_to_locked(self, listener: _Listener, event: WatchEvent) -> None:
        if listener.stream is not None:
            listener.stream._put(event)
        else:
            self._dispatch_q.put((listener.callback, event))

    def _start_resync_locked(self, stream: _Stream) -> None:
        """Re-adds every registration on a new stream (under the lock, right after the session
        was established, before anything else is sent)."""
        if not self._regs:
            return
        s = self._last_zxid
        self._resync_floor = s
        self._resync_seen = set(self._at_last)
        self._resync_buffer = []
        self._resync_missed = []
        last = None
        for reg in list(self._regs.values()):
            start = max(reg.zxid, s - 1, 1)

            def hook(r, reg=reg):
                if not (r.HasField("error") and r.error.code != pb.OK) and \
                        r.add_watch.events_missed:
                    self._resync_missed.append(reg)
                elif r.HasField("error") and r.error.code != pb.OK:
                    log.warning("confab: re-adding the watch on %s: %s", reg.path,
                                r.error.message)

            last = self._send_internal_locked(stream, pb.SessionRequest(
                add_watch=pb.AddWatchRequest(path=reg.path, kind=reg.kind, start_zxid=start)),
                hook)
        self._resync_last_rid = last.request.request_id

    def _finish_resync_locked(self, last_response) -> None:
        self._resync_last_rid = 0
        for reg in self._resync_missed:
            if self._regs.get((reg.path, reg.kind)) is reg:
                self._deliver_locked(reg, WatchEvent(EventType.WATCHES_LOST, reg.path,
                                                     last_response.add_watch.zxid))
        buffered = sorted(self._resync_buffer, key=lambda e: e.zxid)  # stable
        log.debug("confab: watches re-added from zxid %#x: %d events replayed or buffered",
                  self._resync_floor, len(buffered))
        self._resync_buffer, self._resync_seen, self._resync_missed = [], set(), []
        for ev in buffered:
            if ev.zxid == self._resync_floor and (ev.zxid, ev.type, ev.path) in self._at_last:
                continue
            self._route_locked(ev)
        z = _response_zxid(last_response)
        if z > self._last_zxid:
            self._last_zxid, self._at_last = z, set()

    # ---- Connection management ----------------------------------------------------------------

    def _set_state(self, state: ConnectionState) -> None:
        with self._lock:
            self._set_state_locked(state)

    def _set_state_locked(self, state: ConnectionState) -> None:
        self.state = state
        for listener in self._state_listeners:
            self._dispatch_q.put((listener, state))

    def _dispatch_loop(self) -> None:
        while True:
            item = self._dispatch_q.get()
            if item is _END:
                return
            fn, arg = item
            try:
                fn(arg)
            except Exception:  # noqa: BLE001 - a callback's bug must not stop the others
                log.exception("confab: callback %r failed", fn)

    def _conn_loop(self) -> None:
        backoff = 0.05
        while True:
            with self._lock:
                if self._closed or self._closing:
                    return
                connected, stream = self._connected, self._stream
            if not connected:
                if self._connect_round():
                    backoff = 0.05
                else:
                    if not self._ever_connected and self._first_error is not None:
                        return
                    self._wake.wait(backoff)
                    self._wake.clear()
                    backoff = min(backoff * 2, 1.0)
                continue
            interval = self._timeout_ms / 3000.0
            self._wake.wait(min(interval, 0.5))
            self._wake.clear()
            now = time.monotonic()
            if now - stream.last_received > self._timeout_ms * 2 / 3000.0:
                log.info("confab: no response from %s for %.1f s; reconnecting",
                         stream.endpoint, now - stream.last_received)
                stream.call.cancel()  # the reader sees it and reports the loss
                continue
            if now - stream.last_sent >= interval:
                with self._lock:
                    if self._stream is stream and self._connected:
                        self._send_internal_locked(stream,
                                                   pb.SessionRequest(heartbeat=pb.Heartbeat()))

    def _connect_round(self) -> bool:
        """Tries each endpoint once, starting after the last one used; True once connected."""
        for _ in range(len(self._endpoints)):
            with self._lock:
                if self._closing:
                    return False
                endpoint = self._endpoints[self._endpoint_index]
                self._endpoint_index = (self._endpoint_index + 1) % len(self._endpoints)
            if self._connect(endpoint):
                return True
        return False

    def _connect(self, endpoint: str) -> bool:
        try:
            stream = _Stream(endpoint, self._channel_options)
        except Exception as e:  # noqa: BLE001 - a malformed endpoint, say
            log.warning("confab: cannot open a channel to %s: %s", endpoint, e)
            return False
        with self._lock:
            if self._closing:
                stream.close()
                return False
            self._stream = stream
        threading.Thread(target=self._reader, args=(stream,), name="confab-read",
                         daemon=True).start()
        wait = max(1.0, min(self._requested_timeout_ms / 2000.0, 5.0))
        for _ in range(2):  # resume; if the session is gone, open a new one on the same stream
            with self._lock:
                if self._stream is not stream:
                    return False
                resuming = self._session_id != 0
                open_req = pb.SessionRequest(open=pb.OpenSession(
                    timeout_ms=self._requested_timeout_ms, session_id=self._session_id))
                p = self._send_internal_locked(stream, open_req,
                                               lambda r: self._on_opened_locked(stream, r))
            try:
                r = p.future.result(wait)
            except FutureTimeoutError:
                log.info("confab: no OpenSession answer from %s within %.1f s", endpoint, wait)
                break
            except ConfabError as e:  # the stream broke
                log.debug("confab: connecting to %s: %s", endpoint, e)
                break
            if r.HasField("opened"):
                return True
            if not (resuming and r.error.code == pb.SESSION_EXPIRED):
                err = error_for(pb.ErrorCode.Name(r.error.code), r.error.message)
                log.warning("confab: opening a session on %s: %s", endpoint, err)
                break
            if not self._ever_connected:
                # Client(session_id=...) of a session that is gone: the constructor raises.
                with self._lock:
                    self._first_error = SessionExpiredError(r.error.message)
                    self._connected_cv.notify_all()
                break
        with self._lock:
            if self._stream is stream:
                self._stream = None
        stream.close()
        return False

    def _on_opened_locked(self, stream: _Stream, r) -> None:
        """The OpenSession answer, in stream order (before any later response or event)."""
        if stream is not self._stream:
            return
        if not r.HasField("opened"):
            if r.error.code == pb.SESSION_EXPIRED and self._session_id != 0 and \
                    self._ever_connected:
                self._session_id = 0  # gone: its ephemerals too; a new session follows
                self._set_state_locked(ConnectionState.LOST)
            return
        opened = r.opened
        self._session_id = opened.session_id
        self._timeout_ms = opened.timeout_ms
        self._start_resync_locked(stream)
        backlog, self._backlog = self._backlog, []
        for p in backlog:
            if p.abandoned or p.future.done():
                self._pending.pop(p.request.request_id, None)
                continue
            p.stream = stream
            if p.pre is not None:
                p.pre()
            stream.send(p.request)
        self._connected = True
        first = not self._ever_connected
        self._ever_connected = True
        self._set_state_locked(ConnectionState.CONNECTED if first
                               else ConnectionState.RECONNECTED)
        self._connected_cv.notify_all()

    def _on_stream_lost(self, stream: _Stream, error, expired: bool = False) -> None:
        with self._lock:
            if stream is not self._stream:
                stream.close()
                return
            self._stream = None
            was_connected = self._connected
            self._connected = False
            self._resync_last_rid = 0
            self._resync_buffer, self._resync_seen, self._resync_missed = [], set(), []
            failed = [p for p in self._pending.values() if p.stream is stream]
            for p in failed:
                del self._pending[p.request.request_id]
            for reg in list(self._regs.values()):
                for listener in list(reg.listeners):
                    if listener.buffer is not None:  # its AddWatch(start_zxid) fails
                        self._detach_locked(listener)
            if expired:
                self._session_id = 0
                self._set_state_locked(ConnectionState.LOST)
            elif was_connected and not self._closing:
                self._set_state_locked(ConnectionState.SUSPENDED)
        detail = ""
        if isinstance(error, grpc.RpcError):
            try:
                detail = f": {error.code().name} {error.details()}"
            except Exception:  # pragma: no cover
                detail = f": {error}"
        for p in failed:
            if p.future.done():
                continue
            if expired:
                p.future.set_exception(SessionExpiredError("the session expired", p.path))
            else:
                p.future.set_exception(ConnectionLossError(
                    f"the stream to {stream.endpoint} broke with the request in flight{detail}",
                    p.path))
        stream.close()
        self._wake.set()

    def _on_session_expired(self, stream: _Stream) -> None:
        """The server closed our session while we were attached (we were silent too long)."""
        log.warning("confab: session %#x expired; opening a new one", self._session_id)
        self._on_stream_lost(stream, None, expired=True)

    # ---- Test hooks -----------------------------------------------------------------------------

    def _drop_connection(self) -> None:
        """Breaks the current stream as a network failure would (tests)."""
        with self._lock:
            stream = self._stream
        if stream is not None:
            stream.call.cancel()


def _join(parent: str, child: str) -> str:
    return (parent.rstrip("/") or "") + "/" + child


def _create_mode(ephemeral: bool, sequential: bool) -> int:
    if ephemeral:
        return pb.EPHEMERAL_SEQUENTIAL if sequential else pb.EPHEMERAL
    return pb.PERSISTENT_SEQUENTIAL if sequential else pb.PERSISTENT


def _op_to_proto(op: Op):
    if op.kind == "create":
        return pb.Op(create=pb.CreateRequest(path=op.path, data=op.data,
                                             mode=_create_mode(op.ephemeral, op.sequential)))
    if op.kind == "set":
        s = pb.SetRequest(path=op.path, data=op.data)
        if op.version is not None:
            s.version = op.version
        return pb.Op(set=s)
    if op.kind == "delete":
        d = pb.DeleteRequest(path=op.path)
        if op.version is not None:
            d.version = op.version
        return pb.Op(**{"delete": d})
    if op.kind == "check":
        return pb.Op(check=pb.CheckRequest(path=op.path, version=op.version or 0))
    raise ValueError(f"unknown op kind {op.kind!r}")


def _op_result(x):
    which = x.WhichOneof("result")
    if which == "create":
        return CreateResult(x.create.path, Stat._from_proto(x.create.stat))
    if which == "set":
        return SetResult(Stat._from_proto(x.set.stat))
    if which == "delete":
        return DeleteResult(getattr(x, "delete").zxid)
    return CheckResult()


def _op_result_or_error(x):
    if x.HasField("error") and x.error.code != pb.OK:
        return error_for(pb.ErrorCode.Name(x.error.code), x.error.message, x.error.path)
    return _op_result(x)
