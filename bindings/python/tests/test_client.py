"""CRUD, multi, sync, pipelining and every error class, against a real confabd."""

from __future__ import annotations

import signal
import threading
import time

import pytest

import confab
from confab import (
    BadVersionError,
    ClientClosedError,
    ConfabError,
    ConnectionLossError,
    InvalidArgumentError,
    InvalidPathError,
    NoChildrenForEphemeralsError,
    NodeExistsError,
    NoNodeError,
    NotEmptyError,
    Op,
    OperationTimeoutError,
    RuntimeInconsistencyError,
    SessionExpiredError,
    Stat,
    TooLargeError,
    UnavailableError,
)
from conftest import socket_free_port


def test_crud_round_trip(client, root):
    created = client.create(f"{root}/a", b"one")
    assert created.path == f"{root}/a"
    assert isinstance(created.stat, Stat)
    assert created.stat.version == 0 and created.stat.data_length == 3
    assert created.stat.ephemeral_owner == 0 and not created.stat.ephemeral
    assert created.zxid == created.stat.czxid > 0

    got = client.get(f"{root}/a")
    assert got.data == b"one"
    assert got.stat == created.stat
    assert got.zxid >= created.zxid

    stat = client.set(f"{root}/a", "two")  # str is UTF-8 encoded
    assert stat.version == 1 and stat.mzxid > stat.czxid == created.stat.czxid
    assert client.get(f"{root}/a").data == b"two"
    assert client.set(f"{root}/a", b"three", version=1).version == 2

    assert client.exists(f"{root}/a").version == 2
    assert client.exists(f"{root}/missing") is None

    client.create(f"{root}/a/child")
    parent = client.exists(f"{root}/a")
    assert parent.num_children == 1 and parent.cversion == 1
    assert client.get_children(f"{root}/a") == ["child"]
    assert client.get_children(root) == ["a"]

    zxid = client.delete(f"{root}/a/child")
    assert zxid > stat.mzxid
    client.delete(f"{root}/a", version=2)
    assert client.exists(f"{root}/a") is None
    assert client.get_children(root) == []
    assert client.sync() >= zxid


def test_ephemeral_and_sequential_nodes(make_client, client, root):
    other = make_client()
    eph = client.create(f"{root}/eph", b"x", ephemeral=True)
    assert eph.stat.ephemeral_owner == client.session_id != 0
    assert eph.stat.ephemeral
    seq = [client.create(f"{root}/job-", sequential=True).path for _ in range(3)]
    assert seq == [f"{root}/job-{i:010d}" for i in range(1, 4)]  # "eph" took sequence 0
    eseq = other.create(f"{root}/e-", ephemeral=True, sequential=True)
    assert eseq.path == f"{root}/e-0000000004"
    assert eseq.stat.ephemeral_owner == other.session_id
    queue = client.create(f"{root}/queue")
    assert client.create(f"{queue.path}/", sequential=True).path == f"{queue.path}/0000000000"

    other.close()  # its ephemerals go with its session
    assert client.exists(eseq.path) is None
    assert client.exists(eph.path) is not None
    client.close()
    with make_client() as third:
        assert third.exists(eph.path) is None
        assert third.exists(seq[0]) is not None


def test_make_parents_ensure_path_and_recursive_delete(client, root):
    deep = client.create(f"{root}/x/y/z", b"deep", make_parents=True)
    assert deep.path == f"{root}/x/y/z"
    assert client.get(f"{root}/x/y").data == b""
    client.ensure_path(f"{root}/x/y/w/v")
    client.ensure_path(f"{root}/x/y/w/v")  # existing: fine
    assert client.get_children(f"{root}/x/y") == ["w", "z"]
    client.delete(f"{root}/x", recursive=True)
    assert client.exists(f"{root}/x") is None


def test_multi_applies_all_at_one_zxid(client, root):
    client.create(f"{root}/e", b"e0")
    results = client.multi([
        Op.create(f"{root}/n", b"n"),
        Op.set(f"{root}/e", b"e1", version=0),
        Op.check(f"{root}/e", 1),
        Op.create(f"{root}/s-", sequential=True),
    ])
    assert isinstance(results[0], confab.CreateResult) and results[0].path == f"{root}/n"
    assert isinstance(results[1], confab.SetResult) and results[1].stat.version == 1
    assert isinstance(results[2], confab.CheckResult)
    assert results[3].path.startswith(f"{root}/s-")
    assert results[0].stat.czxid == results[1].stat.mzxid == results[3].stat.czxid
    results = client.multi([Op.delete(f"{root}/n"), Op.delete(f"{root}/e", version=1)])
    assert isinstance(results[0], confab.DeleteResult) and results[0].zxid > 0
    assert client.exists(f"{root}/e") is None


def test_multi_failure_names_the_failed_op_and_rolls_back(client, root):
    client.create(f"{root}/e", b"e0")
    with pytest.raises(BadVersionError) as failed:
        client.multi([Op.create(f"{root}/n"), Op.set(f"{root}/e", b"x"), Op.check(f"{root}/e", 3)])
    assert failed.value.failed_op == 2
    assert failed.value.code == "BAD_VERSION"
    assert [type(r) for r in failed.value.results] == [
        RuntimeInconsistencyError, RuntimeInconsistencyError, BadVersionError]
    assert client.exists(f"{root}/n") is None
    assert client.get(f"{root}/e").data == b"e0"
    # Refused at admission (a malformed path in op 1): still names the op.
    with pytest.raises(InvalidPathError) as refused:
        client.multi([Op.create(f"{root}/n"), Op.create(f"{root}/bad/")])
    assert refused.value.failed_op == 1


def test_every_server_error_class(client, root, server, make_client):
    client.create(f"{root}/p", b"p")
    client.create(f"{root}/p/c")
    client.create(f"{root}/eph", ephemeral=True)

    def raises(cls, fn, *args, **kwargs):
        with pytest.raises(cls) as info:
            fn(*args, **kwargs)
        e = info.value
        assert isinstance(e, ConfabError) and e.code == cls.code and str(e)
        return e

    e = raises(NoNodeError, client.get, f"{root}/missing")
    assert e.path == f"{root}/missing" and f"{root}/missing" in str(e)
    raises(NoNodeError, client.create, f"{root}/missing/child")
    raises(NoNodeError, client.delete, f"{root}/missing")
    raises(NoNodeError, client.get_children, f"{root}/missing")
    e = raises(NodeExistsError, client.create, f"{root}/p")
    assert e.path == f"{root}/p"
    raises(BadVersionError, client.set, f"{root}/p", b"x", version=7)
    raises(BadVersionError, client.delete, f"{root}/p/c", version=3)
    raises(NotEmptyError, client.delete, f"{root}/p")
    raises(NoChildrenForEphemeralsError, client.create, f"{root}/eph/child")
    e = raises(InvalidPathError, client.get, "no/slash")
    assert "no/slash" in str(e)
    raises(InvalidPathError, client.create, f"{root}/trailing/")
    raises(TooLargeError, client.create, f"{root}/big", b"x" * 70000)  # --max-data-bytes=65536
    raises(InvalidArgumentError, client.delete, "/")

    # A session that is gone cannot be resumed.
    gone = make_client()
    gone_id = gone.session_id
    gone.close()
    e = raises(SessionExpiredError, confab.Client, server.endpoint, session_id=gone_id,
               connect_timeout=5)
    # A closed client refuses calls (ClientClosedError is a SessionExpiredError).
    raises(ClientClosedError, gone.get, root)
    assert issubclass(ClientClosedError, SessionExpiredError)
    # The stream still works after all of that.
    assert client.get(f"{root}/p").data == b"p"


def test_client_side_errors(client, root, server):
    # No response in time.
    with pytest.raises(OperationTimeoutError):
        client.get(root, timeout=0)
    # Nobody listening.
    with socket_free_port() as port:
        with pytest.raises(UnavailableError):
            confab.Client(f"127.0.0.1:{port}", connect_timeout=0.5)
    # The stream breaks with requests in flight (the server is frozen, so none is answered).
    server.signal(signal.SIGSTOP)
    try:
        futures = [client.get_async(root) for _ in range(5)]
        time.sleep(0.05)
        client._drop_connection()
        for f in futures:
            with pytest.raises(ConnectionLossError) as lost:
                f.result(5)
            assert lost.value.code == "UNAVAILABLE" and isinstance(lost.value, UnavailableError)
    finally:
        server.signal(signal.SIGCONT)
    assert client.wait_connected(5)
    assert client.get(root).stat.version == 0


def test_pipelined_requests_are_answered_in_order(client, root):
    client.create(f"{root}/n", b"0")
    futures = []
    for i in range(1, 301):
        futures.append(client.set_async(f"{root}/n", str(i)))
        futures.append(client.get_async(f"{root}/n"))
    futures.append(client.create_async(f"{root}/n"))  # NODE_EXISTS, in band
    futures.append(client.sync_async())
    start = time.monotonic()
    for i in range(300):
        stat = futures[2 * i].result(10)
        got = futures[2 * i + 1].result(10)
        assert stat.version == i + 1
        assert got.data == str(i + 1).encode(), "a read sees exactly the writes before it"
    with pytest.raises(NodeExistsError):
        futures[-2].result(10)
    assert futures[-1].result(10) >= stat.mzxid
    assert time.monotonic() - start < 10


def test_many_threads_share_one_client(client, root):
    errors = []

    def work(t):
        try:
            for i in range(30):
                path = client.create(f"{root}/t{t}-", str(i), sequential=True).path
                assert client.get(path).data == str(i).encode()
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert len(client.get_children(root)) == 240


def test_state_listener_sees_close(make_client):
    c = make_client()
    states = []
    closed = threading.Event()

    def on_state(state):
        states.append(state)
        if state == confab.ConnectionState.CLOSED:
            closed.set()

    c.add_state_listener(on_state)
    assert c.state == confab.ConnectionState.CONNECTED and c.connected
    assert 0 < c.session_timeout <= 10
    c.close()
    assert closed.wait(5)
    assert states == [confab.ConnectionState.CLOSED]


def test_unary_errors_map_to_the_same_classes(server, client, root):
    import grpc

    from confab._proto import pb, pb_grpc
    from confab.errors import error_from_rpc

    client.create(f"{root}/e", b"e0")
    with grpc.insecure_channel(server.endpoint) as channel:
        stub = pb_grpc.CoordinationStub(channel)
        with pytest.raises(grpc.RpcError) as missing:
            stub.Get(pb.GetRequest(path=f"{root}/missing"), timeout=5)
        e = error_from_rpc(missing.value)
        assert isinstance(e, NoNodeError) and f"{root}/missing" in str(e) and e.failed_op == -1
        multi = pb.MultiRequest(ops=[
            pb.Op(create=pb.CreateRequest(path=f"{root}/n")),
            pb.Op(check=pb.CheckRequest(path=f"{root}/e", version=4))])
        with pytest.raises(grpc.RpcError) as failed:
            stub.Multi(multi, timeout=5)
        e = error_from_rpc(failed.value)
        assert isinstance(e, BadVersionError) and e.failed_op == 1
