"""ServiceRegistry, ConfigCache and Mutex against a real confabd."""

from __future__ import annotations

import json
import queue
import threading
import time

import pytest

from confab import ConnectionLossError, ConnectionState
from confab.recipes import (
    MISSING,
    ConfigCache,
    ConfigKeyError,
    ConfigTypeError,
    LockTimeoutError,
    Mutex,
    ServiceRegistry,
    create_protected,
)
from confab.recipes._util import sequence_of
from conftest import expire_session, wait_until

T = 10.0

# ---- ServiceRegistry ---------------------------------------------------------------------------


def test_registry_members_and_layout(make_client, root):
    a, b = make_client(), make_client()
    reg_a = ServiceRegistry(a, f"{root}/services")
    reg_b = ServiceRegistry(b, f"{root}/services")
    m1 = reg_a.register("api", "10.0.0.1", 8080, payload={"zone": "a"})
    m2 = reg_b.register("api", "10.0.0.2", 8080)
    reg_b.register("worker", "10.0.0.3")

    members = reg_a.members("api")
    assert [(m.address, m.port, m.payload) for m in members] == [
        ("10.0.0.1", 8080, {"zone": "a"}), ("10.0.0.2", 8080, None)]
    assert [m.path for m in members] == [m1.path, m2.path]
    assert members[0].id == m1.id and members[0].name == "api"
    assert members[0].sequence < members[1].sequence
    # The layout other clients rely on: <base>/<service>/_c_<uuid>-member-<10 digits>,
    # ephemeral, Curator's ServiceInstance JSON.
    name = m1.path.rsplit("/", 1)[1]
    assert m1.path.startswith(f"{root}/services/api/_c_{m1.id}-member-")
    assert sequence_of(name) >= 0 and len(m1.id) == 36
    got = a.get(m1.path)
    assert got.stat.ephemeral_owner == a.session_id
    doc = json.loads(got.data)
    assert doc["name"] == "api" and doc["id"] == m1.id and doc["address"] == "10.0.0.1"
    assert doc["port"] == 8080 and doc["serviceType"] == "DYNAMIC"
    assert doc["registrationTimeUTC"] > 0

    m1.unregister()
    assert [m.address for m in reg_b.members("api")] == ["10.0.0.2"]
    b.close()  # its members go with its session
    assert reg_a.members("api") == []
    assert reg_a.members("nothing-here") == []


def test_registry_membership_callback(make_client, root):
    a, b = make_client(), make_client()
    registry = ServiceRegistry(a, f"{root}/services")
    seen: queue.Queue = queue.Queue()
    watch = registry.watch("api", lambda members: seen.put([m.address for m in members]))
    assert seen.get(timeout=T) == []
    other = ServiceRegistry(b, f"{root}/services")
    first = other.register("api", "h1")
    assert seen.get(timeout=T) == ["h1"]
    other.register("api", "h2")
    assert seen.get(timeout=T) == ["h1", "h2"]
    first.unregister()
    assert seen.get(timeout=T) == ["h2"]
    b.close()
    assert seen.get(timeout=T) == []
    watch.close()


def test_protected_create_finds_a_create_whose_reply_was_lost(client, root):
    real_create = client.create
    calls = []

    def create_then_lose_the_reply(path, *args, **kwargs):
        result = real_create(path, *args, **kwargs)
        calls.append(result.path)
        if len(calls) == 1:
            raise ConnectionLossError("the reply was lost", path)
        return result

    client.create = create_then_lose_the_reply
    try:
        created = create_protected(client, f"{root}/members", "member-", b"x")
    finally:
        client.create = real_create
    assert calls == [created.path], "created once, found again rather than created twice"
    assert client.get_children(f"{root}/members") == [created.path.rsplit("/", 1)[1]]
    assert created.stat.ephemeral_owner == client.session_id


def test_registry_registers_again_after_the_session_is_lost(make_client, root):
    a = make_client(session_timeout=0.5)
    b = make_client()
    registry = ServiceRegistry(a, f"{root}/services")
    reg = registry.register("api", "10.0.0.9", 9000)
    old_path, old_session = reg.path, a.session_id
    states: queue.Queue = queue.Queue()
    a.add_state_listener(states.put)
    expire_session(a)
    assert states.get(timeout=T) == ConnectionState.LOST
    wait_until(lambda: reg.path != old_path and b.exists(reg.path) is not None, T)
    members = ServiceRegistry(b, f"{root}/services").members("api")
    assert [(m.address, m.id) for m in members] == [("10.0.0.9", reg.id)]
    assert b.exists(reg.path).ephemeral_owner == a.session_id != old_session
    assert b.exists(old_path) is None


# ---- ConfigCache ---------------------------------------------------------------------------------


def put(client, path, value):
    data = json.dumps(value).encode()
    if client.exists(path) is None:
        client.create(path, data, make_parents=True)
    else:
        client.set(path, data)


def test_config_cache_typed_getters(client, root):
    cfg = f"{root}/config"
    put(client, f"{cfg}/ROW_LIMIT", 5000)
    put(client, f"{cfg}/RATIO", 0.5)
    put(client, f"{cfg}/ENABLED", True)
    put(client, f"{cfg}/NAME", "superset")
    put(client, f"{cfg}/FEATURE_FLAGS", {"ALERT_REPORTS": True})
    put(client, f"{cfg}/LIST", [1, 2])
    put(client, f"{cfg}/NOTHING", None)
    client.create(f"{cfg}/PLAIN", b"not json")
    put(client, f"{cfg}/db/main/uri", "sqlite://")
    with ConfigCache(client, cfg) as cache:
        assert cache.get("ROW_LIMIT", int) == 5000
        assert cache.get("ROW_LIMIT", float) == 5000.0  # an int is a fine float
        assert cache.get("RATIO", float) == 0.5
        assert cache.get("ENABLED", bool) is True
        assert cache.get("NAME", str) == "superset"
        assert cache.get("FEATURE_FLAGS", dict) == {"ALERT_REPORTS": True}
        assert cache.get("LIST", list) == [1, 2]
        assert cache.get("NOTHING") is None and "NOTHING" in cache
        assert cache.get("PLAIN", str) == "not json"
        assert cache.get("db/main/uri", str) == "sqlite://"
        assert "db" not in cache and "db/main" not in cache  # folders hold no value
        assert cache["ROW_LIMIT"] == 5000
        assert cache.get("MISSING_KEY", int, default=7) == 7
        with pytest.raises(ConfigKeyError) as missing:
            cache.get("MISSING_KEY", int)
        assert "MISSING_KEY" in str(missing.value) and cfg in str(missing.value)

        with pytest.raises(ConfigTypeError) as mismatch:
            cache.get("NAME", int)
        e = mismatch.value
        assert (e.key, e.expected, e.value) == ("NAME", int, "superset")
        assert str(e) == "config key 'NAME': expected int, got str 'superset'"
        with pytest.raises(ConfigTypeError) as not_an_int:
            cache.get("ENABLED", int)  # a bool is not an int
        assert "ENABLED" in str(not_an_int.value) and "bool" in str(not_an_int.value)
        with pytest.raises(ConfigTypeError):
            cache.get("RATIO", int)
        # The cache's values are not shared with the caller.
        cache.get("FEATURE_FLAGS")["ALERT_REPORTS"] = False
        assert cache.get("FEATURE_FLAGS") == {"ALERT_REPORTS": True}
        assert cache.keys() == sorted(["ROW_LIMIT", "RATIO", "ENABLED", "NAME", "FEATURE_FLAGS",
                                       "LIST", "NOTHING", "PLAIN", "db/main/uri"])


def test_config_cache_follows_changes(client, make_client, root):
    writer = make_client()
    cfg = f"{root}/config"
    put(writer, f"{cfg}/ROW_LIMIT", 5000)
    cache = ConfigCache(client, cfg).start()
    changes: queue.Queue = queue.Queue()
    cache.add_listener(changes.put)
    row_limit: queue.Queue = queue.Queue()
    cache.add_listener(row_limit.put, key="ROW_LIMIT")

    put(writer, f"{cfg}/ROW_LIMIT", 10000)
    change = changes.get(timeout=T)
    assert (change.key, change.old, change.new) == ("ROW_LIMIT", 5000, 10000)
    assert change.zxid > 0 and not change.added and not change.removed
    assert cache.get("ROW_LIMIT", int) == 10000
    assert row_limit.get(timeout=T).new == 10000

    put(writer, f"{cfg}/FEATURE_FLAGS/DASHBOARD_RBAC", True)  # the parent is a folder
    change = changes.get(timeout=T)
    assert (change.key, change.old, change.new) == ("FEATURE_FLAGS/DASHBOARD_RBAC", MISSING, True)
    assert change.added
    writer.delete(f"{cfg}/ROW_LIMIT")
    change = changes.get(timeout=T)
    assert (change.key, change.old, change.removed) == ("ROW_LIMIT", 10000, True)
    assert cache.get("ROW_LIMIT", int, default=50000) == 50000
    writer.set(f"{cfg}/FEATURE_FLAGS/DASHBOARD_RBAC", b"true")  # the same value: no callback
    assert cache.sync(T)
    assert changes.empty() and row_limit.get(timeout=T).removed and row_limit.empty()

    # Many writes, then sync(): the cache reflects them all.
    for i in range(50):
        put(writer, f"{cfg}/K{i % 5}", i)
    assert cache.sync(T)
    assert [cache.get(f"K{i}", int) for i in range(5)] == [45, 46, 47, 48, 49]
    cache.close()


def test_config_cache_misses_nothing_between_its_load_and_its_watch(client, make_client, root):
    writer = make_client()
    cfg = f"{root}/config"
    put(writer, f"{cfg}/A", 1)
    real_watch = client.watch

    def watch_after_a_change(*args, **kwargs):
        put(writer, f"{cfg}/A", 2)  # after the load read A, before the watch exists
        put(writer, f"{cfg}/B", "new")
        return real_watch(*args, **kwargs)

    client.watch = watch_after_a_change
    try:
        cache = ConfigCache(client, cfg).start()
    finally:
        client.watch = real_watch
    assert cache.sync(T)
    assert cache.get("A", int) == 2 and cache.get("B", str) == "new"
    cache.close()


def test_config_cache_keeps_following_across_reconnects(client, make_client, root):
    writer = make_client()
    cfg = f"{root}/config"
    put(writer, f"{cfg}/N", 0)
    cache = ConfigCache(client, cfg).start()
    seen = []
    cache.add_listener(lambda change: seen.append(change.new))
    for i in range(1, 61):
        put(writer, f"{cfg}/N", i)
        if i % 20 == 0:
            client._drop_connection()
    wait_until(lambda: cache.get("N", int) == 60, T)
    assert seen == sorted(seen) and len(set(seen)) == len(seen), "in order, each value once"
    cache.close()


def test_config_cache_of_a_root_created_later(client, make_client, root):
    writer = make_client()
    cache = ConfigCache(client, f"{root}/later").start()
    assert cache.keys() == []
    put(writer, f"{root}/later/ROW_LIMIT", 1)
    wait_until(lambda: cache.get("ROW_LIMIT", int, default=None) == 1, T)
    cache.close()


# ---- Mutex ---------------------------------------------------------------------------------------


def test_mutex_mutual_exclusion_and_fencing_tokens(make_client, root):
    clients = [make_client() for _ in range(3)]
    lock_path = f"{root}/lock"
    inside = []
    tokens = []
    errors = []
    guard = threading.Lock()

    def contend(t):
        mutex = Mutex(clients[t % 3], lock_path)  # threads share clients, not Mutexes
        try:
            for _ in range(5):
                assert mutex.acquire(timeout=T)
                try:
                    with guard:
                        inside.append(t)
                        assert len(inside) == 1, f"two holders: {inside}"
                        tokens.append(mutex.fencing_token)
                    time.sleep(0.002)
                    with guard:
                        inside.remove(t)
                finally:
                    mutex.release()
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=contend, args=(t,)) for t in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(3 * T)
    assert not errors
    assert len(tokens) == 30
    assert tokens == sorted(tokens) and len(set(tokens)) == 30, "fencing tokens increase"
    assert clients[0].get_children(lock_path) == [], "no lock node left behind"


def test_mutex_timeout_context_manager_and_waking_the_next(make_client, root):
    a, b = make_client(), make_client()
    lock_path = f"{root}/lock"
    holder = Mutex(a, lock_path)
    with holder:
        assert holder.is_held and holder.fencing_token > 0
        node = holder.node
        assert node.startswith(f"{lock_path}/_c_") and "-lock-" in node
        assert a.exists(node).ephemeral_owner == a.session_id
        assert holder.fencing_token == a.exists(node).czxid
        waiter = Mutex(b, lock_path, timeout=0.3)
        start = time.monotonic()
        assert not waiter.acquire(timeout=0.3)
        assert 0.25 < time.monotonic() - start < 3
        with pytest.raises(LockTimeoutError):
            with waiter:
                pass
        assert a.get_children(lock_path) == [node.rsplit("/", 1)[1]], "the waiter cleaned up"

        acquired = threading.Event()
        token = []

        def wait_for_it():
            m = Mutex(b, lock_path)
            with m:
                token.append(m.fencing_token)
                acquired.set()

        thread = threading.Thread(target=wait_for_it)
        thread.start()
        wait_until(lambda: len(a.get_children(lock_path)) == 2, T)
        assert not acquired.is_set()
        first_token = holder.fencing_token
    assert acquired.wait(T), "releasing wakes the waiter"
    thread.join(T)
    assert token[0] > first_token
    assert not holder.is_held


def test_mutex_waiters_each_watch_only_their_predecessor(make_client, root):
    lock_path = f"{root}/lock"
    holder = Mutex(make_client(), lock_path)
    assert holder.acquire(T)
    watched = {}  # waiter -> the paths it set watches on
    threads, mutexes = [], []
    for i in range(3):
        c = make_client()
        real_exists = c.exists

        def exists(path, watch=None, i=i, real_exists=real_exists, **kw):
            if watch is not None:
                watched.setdefault(i, []).append(path)
            return real_exists(path, watch=watch, **kw)

        c.exists = exists
        m = Mutex(c, lock_path)
        mutexes.append(m)
        threads.append(threading.Thread(target=lambda m=m: (m.acquire(T), m.release())))
        threads[-1].start()
        wait_until(lambda: len(holder._client.get_children(lock_path)) == i + 2, T)
        wait_until(lambda: i in watched, T)
    nodes = sorted(holder._client.get_children(lock_path), key=sequence_of)
    assert [watched[i] for i in range(3)] == [[f"{lock_path}/{n}"] for n in nodes[:3]]
    holder.release()
    for t in threads:
        t.join(T)
    assert holder._client.get_children(lock_path) == []


def test_mutex_lost_with_its_session(make_client, root):
    a, b = make_client(session_timeout=0.5), make_client()
    lock_path = f"{root}/lock"
    holder = Mutex(a, lock_path)
    assert holder.acquire(T)
    token = holder.fencing_token
    waiter = Mutex(b, lock_path)
    got = []
    thread = threading.Thread(target=lambda: got.append(waiter.acquire(T)))
    thread.start()
    wait_until(lambda: len(b.get_children(lock_path)) == 2, T)
    expire_session(a)
    thread.join(T)
    assert got == [True] and waiter.fencing_token > token
    wait_until(lambda: not holder.is_held, T)
    holder.release()  # its node is gone already: fine
    waiter.release()
    assert b.get_children(lock_path) == []
