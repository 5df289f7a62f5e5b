"""Mutex: a distributed lock (Curator's InterProcessMutex layout).

Layout (see bindings/python/README.md):

    <lock_path>                               persistent, created on demand
    <lock_path>/_c_<uuid>-lock-<10 digits>    EPHEMERAL_SEQUENTIAL, one per contender

The contender whose node has the lowest sequence number holds the lock. Every other contender
watches only its predecessor (an exists watch) and looks again when that goes: no herd. The
fencing token is the holder's node czxid: it increases from one holder to the next, so a
resource can refuse a write carrying an older token than one it has seen.
"""

from __future__ import annotations

import threading

from confab.errors import ConfabError, NoNodeError
from confab.models import ConnectionState
from confab.recipes._util import RETRYABLE, Deadline, create_protected, join, retry, sequence_of

LOCK_NAME = "lock-"


class LockTimeoutError(ConfabError):
    """The lock was not acquired within the timeout."""

    code = None


class Mutex:
    """``with Mutex(client, "/locks/report"):`` or ``if m.acquire(timeout=5): ... m.release()``.

    Not reentrant. Threads sharing one Mutex take turns on it (a local lock first); threads or
    processes with Mutexes of their own on the same path contend through Confab.
    """

    def __init__(self, client, path: str, timeout: float | None = None):
        self._client = client
        self.path = "/" + path.strip("/")
        self.timeout = timeout  # for the with statement
        self._local = threading.Lock()
        self._node: str | None = None
        self.fencing_token: int | None = None  # the holder's node czxid, while held
        self._lost = False
        self._wakeup: threading.Event | None = None  # set to wake a waiting acquire

    @property
    def is_held(self) -> bool:
        """Held by this Mutex, as far as it knows (False once its session was lost)."""
        return self._node is not None and not self._lost

    @property
    def node(self) -> str | None:
        return self._node

    def acquire(self, timeout: float | None = None) -> bool:
        """Waits up to timeout seconds (None: forever); True when acquired."""
        deadline = Deadline(timeout)
        left = deadline.left()
        if not self._local.acquire(timeout=-1 if left is None else left):
            return False
        # Told of a lost session while waiting or holding (until release).
        self._client.add_state_listener(self._on_state)
        try:
            if self._acquire(deadline):
                return True
        except BaseException:
            self._client.remove_state_listener(self._on_state)
            self._local.release()
            raise
        self._client.remove_state_listener(self._on_state)
        self._local.release()
        return False

    def _acquire(self, deadline: Deadline) -> bool:
        client = self._client
        node = None
        watched = None  # (predecessor, its deletion) while a watch on it is armed
        try:
            while True:
                if node is None:
                    self._lost = False
                    created = create_protected(client, self.path, LOCK_NAME, b"",
                                               deadline=_at_least(deadline))
                    node, token = created.path, created.stat.czxid
                name = node.rsplit("/", 1)[1]
                try:
                    children = client.get_children(self.path)
                except RETRYABLE:
                    if deadline.expired():
                        raise
                    client.wait_connected(deadline.left(1.0))
                    continue
                contenders = sorted((c for c in children if sequence_of(c) >= 0),
                                    key=sequence_of)
                if name not in contenders:
                    node = None  # our node went with a lost session: contend again
                    continue
                index = contenders.index(name)
                if index == 0:
                    self._node, self.fencing_token = node, token
                    return True
                predecessor = join(self.path, contenders[index - 1])
                if watched is None or watched[0] != predecessor or watched[1].is_set():
                    gone = threading.Event()
                    try:
                        stat = client.exists(predecessor, watch=lambda _e, g=gone: g.set())
                    except RETRYABLE:
                        if deadline.expired():
                            raise
                        client.wait_connected(deadline.left(1.0))
                        continue
                    watched = (predecessor, gone)
                    if stat is None:
                        continue
                gone = watched[1]
                # Woken by the predecessor's deletion, or by a lost session (our node is gone
                # then); a look every 10 s is only a safety net.
                self._wakeup = gone
                gone.wait(deadline.left(10.0))
                if deadline.expired() and not gone.is_set():
                    self._delete(node)
                    node = None
                    return False
        except BaseException:
            if node is not None and self._node != node:
                self._delete(node)
            raise

    def release(self) -> None:
        """Releases the lock (deletes its node)."""
        node, self._node, self.fencing_token = self._node, None, None
        if node is None:
            raise RuntimeError(f"Mutex {self.path} is not held")
        try:
            self._delete(node)
        finally:
            self._client.remove_state_listener(self._on_state)
            self._local.release()

    def _delete(self, node: str) -> None:
        try:
            retry(self._client, self._client.delete, node)
        except NoNodeError:
            pass

    def _on_state(self, state: ConnectionState) -> None:
        if state == ConnectionState.LOST:
            self._lost = True
            wakeup = self._wakeup
            if wakeup is not None:
                wakeup.set()

    def __enter__(self) -> "Mutex":
        if not self.acquire(self.timeout):
            raise LockTimeoutError(f"lock {self.path} not acquired within {self.timeout} s",
                                   self.path)
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _at_least(deadline: Deadline) -> Deadline:
    """The create itself gets at least a few seconds, so that a nearly expired acquire still
    finds (and deletes) the node a lost reply created."""
    d = Deadline(None)
    if deadline.at is not None:
        d.at = max(deadline.at, Deadline(3.0).at)
    return d
