"""Stream loss: reconnect, resume the session, resume watches from the last zxid seen."""

from __future__ import annotations

import queue
import signal
import threading
import time

import pytest

from confab import ConfabError, ConnectionState, EventType, WatchEvent
from conftest import expire_session, socket_free_port, wait_until

T = 10.0


def states_of(client):
    q: queue.Queue = queue.Queue()
    client.add_state_listener(q.put)
    return q


def next_state(q: queue.Queue, timeout: float = T):
    try:
        return q.get(timeout=timeout)
    except queue.Empty:
        pytest.fail(f"no state change within {timeout} s")


def collect(stream, count: int, timeout: float = T) -> list:
    events = []
    deadline = time.monotonic() + timeout
    while len(events) < count and time.monotonic() < deadline:
        e = stream.poll(0.1)
        if e is not None:
            events.append((e.type, e.path, e.zxid))
    assert stream.poll(0.3) is None, "more events than changes"
    return events


class Writer:
    """Creates root/n0000, n0001, ... from a thread until stopped, riding out failures: a
    create whose outcome is unknown is settled afterwards by looking at the tree."""

    def __init__(self, client, root: str):
        self.client, self.root = client, root
        self.acked = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run)
        self.thread.start()

    def run(self):
        i = 0
        while not self.stop.is_set():
            try:
                self.client.create(f"{self.root}/n{i:04d}", timeout=2)
                self.acked += 1
            except ConfabError:
                self.client.wait_connected(2)
            i += 1
            time.sleep(0.002)

    def wait_acked(self, n: int, timeout: float = T):
        wait_until(lambda: self.acked >= n, timeout, message=f"only {self.acked} writes acked")

    def finish(self):
        self.stop.set()
        self.thread.join(T)
        assert not self.thread.is_alive()


def expected_creates(client, root: str) -> list:
    nodes = [(client.exists(f"{root}/{c}").czxid, f"{root}/{c}") for c in client.get_children(root)]
    return [(EventType.NODE_CREATED, path, zxid) for zxid, path in sorted(nodes)]


def test_reconnect_across_a_server_restart(own_server, make_client):
    a = make_client(own_server.endpoint)
    b = make_client(own_server.endpoint)
    states = states_of(a)
    session = a.session_id
    a.create("/r")
    eph = a.create("/eph", b"mine", ephemeral=True)
    stream = a.watch("/r", recursive=True)
    writer = Writer(b, "/r")
    writer.wait_acked(40)

    # a comes back only once b wrote more after the restart: those events must be replayed.
    allow = threading.Event()
    real_connect = a._connect
    a._connect = lambda endpoint: allow.wait(T) and real_connect(endpoint)
    own_server.restart()  # SIGTERM, then the same data dir and port
    assert next_state(states) == ConnectionState.SUSPENDED
    writer.wait_acked(writer.acked + 40)
    allow.set()
    assert next_state(states) == ConnectionState.RECONNECTED
    writer.wait_acked(writer.acked + 20)
    writer.finish()

    expected = expected_creates(b, "/r")
    assert len(expected) >= 80
    assert collect(stream, len(expected)) == expected, "missed or duplicated events"
    # The same session, with its ephemeral.
    assert a.session_id == session
    stat = b.exists("/eph")
    assert stat is not None and stat.ephemeral_owner == session and stat.czxid == eph.zxid
    assert states.empty()
    # And the watch goes on.
    zxid = b.delete("/r/n0000")
    assert stream.poll(T) == WatchEvent(EventType.NODE_DELETED, "/r/n0000", zxid)
    stream.close()


def test_dropped_streams_resume_without_missing_or_repeating_events(make_client, root):
    a = make_client()
    b = make_client()
    states = states_of(a)
    session = a.session_id
    stream = a.watch(root, recursive=True)
    data = []
    a.add_watch(root, data.append)  # persistent, non-recursive: child events of root
    writer = Writer(b, root)
    for n in range(3):
        writer.wait_acked(30 * (n + 1))
        a._drop_connection()
        assert next_state(states) == ConnectionState.SUSPENDED
        assert next_state(states) == ConnectionState.RECONNECTED
    writer.wait_acked(120)
    writer.finish()
    expected = expected_creates(b, root)
    assert collect(stream, len(expected)) == expected
    assert a.session_id == session
    wait_until(lambda: len(data) >= len(expected), 5)
    time.sleep(0.2)
    assert [(e.type, e.zxid) for e in data] == \
        [(EventType.NODE_CHILDREN_CHANGED, z) for _, _, z in expected]


@pytest.mark.parametrize("via", ["notice", "resume"])
def test_an_expired_session_is_lost_then_replaced(make_client, root, via):
    a = make_client(session_timeout=0.5)
    b = make_client()
    states = states_of(a)
    old = a.session_id
    eph = a.create(f"{root}/eph", ephemeral=True)
    stream = a.watch(root, recursive=True)
    expire_session(a, via)
    if via == "resume":
        assert next_state(states) == ConnectionState.SUSPENDED
    assert next_state(states) == ConnectionState.LOST
    assert next_state(states) == ConnectionState.RECONNECTED
    assert a.session_id not in (0, old)
    assert b.exists(eph.path) is None, "the expired session's ephemeral is gone"
    # The watch lived on: the ephemeral's deletion once, then new changes.
    gone = stream.poll(T)
    assert (gone.type, gone.path) == (EventType.NODE_DELETED, eph.path)
    created = b.create(f"{root}/after")
    assert stream.poll(T) == WatchEvent(EventType.NODE_CREATED, f"{root}/after", created.zxid)
    assert stream.poll(0.3) is None
    # The new session works, ephemerals included.
    assert a.create(f"{root}/eph2", ephemeral=True).stat.ephemeral_owner == a.session_id


def test_heartbeats_keep_a_short_session_alive(make_client, root):
    a = make_client(session_timeout=0.5)
    states = states_of(a)
    assert a.session_timeout == 0.5
    eph = a.create(f"{root}/eph", ephemeral=True)
    time.sleep(2.0)  # four session timeouts, idle
    assert states.empty()
    assert a.exists(eph.path).ephemeral_owner == a.session_id


def test_the_next_endpoint_is_tried(server, make_client, root):
    with socket_free_port() as dead:
        a = make_client(f"127.0.0.1:{dead},{server.endpoint}")
        states = states_of(a)
        session = a.session_id
        a.create(f"{root}/n")
        for _ in range(2):  # each time past the dead endpoint again
            a._drop_connection()
            assert next_state(states) == ConnectionState.SUSPENDED
            assert next_state(states) == ConnectionState.RECONNECTED
        assert a.session_id == session
        assert a.get(f"{root}/n").stat.version == 0


def test_a_silent_server_is_detected_and_the_session_resumed(server, make_client, root):
    a = make_client(session_timeout=4.0)
    states = states_of(a)
    session = a.session_id
    stream = a.watch(root, recursive=True)
    server.signal(signal.SIGSTOP)  # the connection stays up; nothing answers
    try:
        assert next_state(states, 6.0) == ConnectionState.SUSPENDED  # after 2/3 of 4 s
    finally:
        server.signal(signal.SIGCONT)
    assert next_state(states) == ConnectionState.RECONNECTED
    assert a.session_id == session
    created = a.create(f"{root}/after")
    assert stream.poll(T) == WatchEvent(EventType.NODE_CREATED, f"{root}/after", created.zxid)
