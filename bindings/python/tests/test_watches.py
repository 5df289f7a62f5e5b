"""Every watch kind, as callbacks and as iterators."""

from __future__ import annotations

import queue
import threading

import pytest

from confab import EventType, WatchEvent

T = 5.0  # every wait in these tests is bounded by this


class Events:
    """A callback collecting events, with bounded waits."""

    def __init__(self):
        self.q: queue.Queue = queue.Queue()

    def __call__(self, event: WatchEvent) -> None:
        assert threading.current_thread().name == "confab-events"
        self.q.put(event)

    def next(self, timeout: float = T) -> WatchEvent:
        try:
            return self.q.get(timeout=timeout)
        except queue.Empty:
            pytest.fail(f"no event within {timeout} s")

    def none_within(self, seconds: float = 0.2) -> bool:
        try:
            event = self.q.get(timeout=seconds)
        except queue.Empty:
            return True
        pytest.fail(f"unexpected event {event}")


def ev(type_, path, zxid):
    return WatchEvent(type_, path, zxid)


def test_data_watch_from_get_fires_once(client, make_client, root):
    other = make_client()
    client.create(f"{root}/n", b"0")
    events = Events()
    client.get(f"{root}/n", watch=events)
    s1 = other.set(f"{root}/n", b"1")
    assert events.next() == ev(EventType.NODE_DATA_CHANGED, f"{root}/n", s1.mzxid)
    other.set(f"{root}/n", b"2")
    events.none_within()  # one-shot
    client.get(f"{root}/n", watch=events)
    zxid = other.delete(f"{root}/n")
    assert events.next() == ev(EventType.NODE_DELETED, f"{root}/n", zxid)


def test_exists_watch_on_a_missing_node_fires_created(client, make_client, root):
    other = make_client()
    events = Events()
    assert client.exists(f"{root}/m", watch=events) is None
    created = other.create(f"{root}/m")
    assert events.next() == ev(EventType.NODE_CREATED, f"{root}/m", created.zxid)
    other.set(f"{root}/m", b"x")
    events.none_within()


def test_child_watch(client, make_client, root):
    other = make_client()
    client.create(f"{root}/p")
    events = Events()
    assert client.get_children(f"{root}/p", watch=events) == []
    c = other.create(f"{root}/p/c")
    assert events.next() == ev(EventType.NODE_CHILDREN_CHANGED, f"{root}/p", c.zxid)
    other.set(f"{root}/p", b"data is not a child change")
    client.get_children(f"{root}/p", watch=events)
    other.set(f"{root}/p/c", b"nor is a child's data")
    events.none_within()
    other.delete(f"{root}/p/c")
    assert events.next().type == EventType.NODE_CHILDREN_CHANGED
    client.get_children(f"{root}/p", watch=events)
    zxid = other.delete(f"{root}/p")
    assert events.next() == ev(EventType.NODE_DELETED, f"{root}/p", zxid)


def test_data_and_child_watch_on_one_node_both_fire_on_delete(client, root):
    client.create(f"{root}/q")
    data, children = Events(), Events()
    client.get(f"{root}/q", watch=data)
    client.get_children(f"{root}/q", watch=children)
    zxid = client.delete(f"{root}/q")
    assert data.next() == children.next() == ev(EventType.NODE_DELETED, f"{root}/q", zxid)


def test_failed_get_sets_no_watch(client, root):
    events = Events()
    with pytest.raises(Exception):
        client.get(f"{root}/missing", watch=events)
    client.create(f"{root}/missing")
    events.none_within()


def test_persistent_watch_until_removed(client, make_client, root):
    other = make_client()
    client.create(f"{root}/pw")
    events = Events()
    handle = client.add_watch(f"{root}/pw", events)
    s1 = other.set(f"{root}/pw", b"1")
    child = other.create(f"{root}/pw/c")
    other.set(f"{root}/pw/c", b"x")  # a child's data: not this watch's
    s2 = other.set(f"{root}/pw", b"2")
    assert [events.next() for _ in range(3)] == [
        ev(EventType.NODE_DATA_CHANGED, f"{root}/pw", s1.mzxid),
        ev(EventType.NODE_CHILDREN_CHANGED, f"{root}/pw", child.zxid),
        ev(EventType.NODE_DATA_CHANGED, f"{root}/pw", s2.mzxid),
    ]
    handle.remove()
    other.set(f"{root}/pw", b"3")
    events.none_within()


def test_recursive_watch_callbacks(client, make_client, root):
    other = make_client()
    client.create(f"{root}/rw")
    events = Events()
    client.add_watch(f"{root}/rw", events, recursive=True)
    a = other.create(f"{root}/rw/a")
    ab = other.create(f"{root}/rw/a/b", b"b")
    other.create(f"{root}/rwx")  # shares the prefix: not watched
    sab = other.set(f"{root}/rw/a/b", b"b2")
    dab = other.delete(f"{root}/rw/a/b")
    assert [events.next() for _ in range(4)] == [
        ev(EventType.NODE_CREATED, f"{root}/rw/a", a.zxid),
        ev(EventType.NODE_CREATED, f"{root}/rw/a/b", ab.zxid),
        ev(EventType.NODE_DATA_CHANGED, f"{root}/rw/a/b", sab.mzxid),
        ev(EventType.NODE_DELETED, f"{root}/rw/a/b", dab),
    ]
    events.none_within()


def test_watch_iterator(client, make_client, root):
    other = make_client()
    client.create(f"{root}/cfg")
    expected = []

    def writer():
        for i in range(20):
            path = f"{root}/cfg/k{i % 4}"
            if i < 4:
                expected.append((EventType.NODE_CREATED, path, other.create(path, b"0").zxid))
            else:
                expected.append((EventType.NODE_DATA_CHANGED, path, other.set(path, str(i)).mzxid))

    seen = []
    with client.watch(f"{root}/cfg", recursive=True) as stream:
        thread = threading.Thread(target=writer)
        thread.start()
        guard = threading.Timer(T, stream.close)  # bounds the plain for loop below
        guard.start()
        for event in stream:  # the documented way
            seen.append((event.type, event.path, event.zxid))
            if len(seen) == 20:
                break
        guard.cancel()
        thread.join(T)
        assert stream.poll(0.2) is None
    assert seen == expected
    assert stream.poll(0) is None  # closed: ends at once
    assert list(stream) == []


def test_two_iterators_on_one_path_and_removing_one(client, make_client, root):
    other = make_client()
    client.create(f"{root}/n")
    first = client.watch(f"{root}/n")
    second = client.watch(f"{root}/n")
    s1 = other.set(f"{root}/n", b"1")
    assert first.poll(T).zxid == s1.mzxid
    assert second.poll(T).zxid == s1.mzxid
    first.close()
    s2 = other.set(f"{root}/n", b"2")
    assert second.poll(T).zxid == s2.mzxid
    assert first.poll(0.2) is None
    second.close()


def test_event_of_own_write_is_delivered_before_its_response(client, root):
    client.create(f"{root}/n")
    with client.watch(f"{root}/n") as stream:
        for i in range(20):
            stat = client.set(f"{root}/n", str(i))
            event = stream.poll(0)  # no waiting: it must be there already
            assert event == ev(EventType.NODE_DATA_CHANGED, f"{root}/n", stat.mzxid)


def test_watch_from_a_start_zxid_replays_what_came_after(client, make_client, root):
    other = make_client()
    client.create(f"{root}/w")
    start = client.sync()
    s1 = other.set(f"{root}/w", b"1")
    c = other.create(f"{root}/w/c")
    with client.watch(f"{root}/w", recursive=True, start_zxid=start) as stream:
        assert stream.poll(T) == ev(EventType.NODE_DATA_CHANGED, f"{root}/w", s1.mzxid)
        assert stream.poll(T) == ev(EventType.NODE_CREATED, f"{root}/w/c", c.zxid)
        s2 = other.set(f"{root}/w/c", b"live")
        assert stream.poll(T) == ev(EventType.NODE_DATA_CHANGED, f"{root}/w/c", s2.mzxid)
        assert stream.poll(0.2) is None
