"""Fixtures: a real confabd on a free 127.0.0.1 port in a temp dir, clients, a root per test.

CONFABD names the server binary (default /work/main/build/server/confabd). The generated stubs
come from PYTHONPATH (as ctest sets it: bindings/python and the build tree's stubs); when they
are not importable they are generated here with build_stubs.sh into a temp dir.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
PACKAGE_ROOT = HERE.parent  # bindings/python
if str(PACKAGE_ROOT) not in sys.path:
    sys.path.insert(0, str(PACKAGE_ROOT))


def _stubs_importable() -> bool:
    for entry in sys.path:
        if (Path(entry or ".") / "confab" / "v1" / "coordination_pb2.py").is_file():
            return True
    return False


if not _stubs_importable():
    _gen = tempfile.mkdtemp(prefix="confab-py-stubs-")
    atexit.register(shutil.rmtree, _gen, True)
    subprocess.run(["sh", str(PACKAGE_ROOT / "build_stubs.sh"), _gen], check=True)
    sys.path.append(_gen)

import confab  # noqa: E402

CONFABD = os.environ.get("CONFABD", "/work/main/build/server/confabd")
SERVER_FLAGS = ["--session-timeout-min-ms=500", "--tick-ms=50", "--max-data-bytes=65536"]
ADDRESS_RE = re.compile(r"^[0-9.]+:(\d+)$")


class ConfabServer:
    """One confabd process on 127.0.0.1; restart() keeps its data dir and port."""

    def __init__(self, data_dir: Path, flags=()):
        self.data_dir = data_dir
        self.flags = list(flags)
        self.port = 0
        self.proc: subprocess.Popen | None = None
        self.log_path = data_dir.parent / (data_dir.name + ".log")

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        if not os.access(CONFABD, os.X_OK):
            pytest.fail(f"confabd not found at {CONFABD} (set CONFABD, or build it: "
                        "cmake --build build --target confabd)")
        address_file = self.data_dir / "ADDRESS"
        if address_file.exists():
            address_file.unlink()
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [CONFABD, f"--data-dir={self.data_dir}", f"--listen=127.0.0.1:{self.port}",
             *self.flags], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"confabd exited with {self.proc.returncode}:\n{self.log()}")
            try:
                text = address_file.read_text().strip()
            except FileNotFoundError:
                text = ""
            match = ADDRESS_RE.match(text)
            if match and self._accepts(int(match.group(1))):
                self.port = int(match.group(1))
                return
            time.sleep(0.02)
        self.stop()
        pytest.fail(f"confabd did not come up within {timeout} s:\n{self.log()}")

    @staticmethod
    def _accepts(port: int) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            return False

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM to exactly this process; SIGKILL if it does not exit in time."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return None if proc is None else proc.returncode
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait(5)

    def restart(self) -> None:
        self.stop()
        self.start()

    def signal(self, sig: int) -> None:
        """Sends sig to this server; for SIGSTOP, returns once every thread is stopped."""
        assert self.proc is not None
        self.proc.send_signal(sig)
        if sig != signal.SIGSTOP:
            return
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            states = []
            for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
                try:
                    # "pid (comm) state ...": comm may hold spaces, the state follows ") ".
                    states.append((task / "stat").read_text().rsplit(") ", 1)[1][0])
                except (OSError, IndexError):
                    pass
            if states and all(s in "tT" for s in states):
                return
            time.sleep(0.005)
        pytest.fail("confabd did not stop on SIGSTOP within 5 s")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    s = ConfabServer(tmp_path_factory.mktemp("confabd") / "data", SERVER_FLAGS)
    s.start()
    yield s
    s.stop()


@pytest.fixture
def own_server(tmp_path):
    """A server of the test's own (for tests that stop or restart it)."""
    s = ConfabServer(tmp_path / "data", SERVER_FLAGS)
    s.start()
    yield s
    s.stop()


@pytest.fixture
def make_client(server):
    """make_client(endpoint=server, **kwargs): clients closed at the end of the test."""
    clients = []

    def make(endpoint: str | None = None, **kwargs) -> confab.Client:
        kwargs.setdefault("session_timeout", 10.0)
        c = confab.Client(endpoint or server.endpoint, **kwargs)
        clients.append(c)
        return c

    yield make
    for c in clients:
        c.close()


@pytest.fixture
def client(make_client) -> confab.Client:
    return make_client()


@pytest.fixture
def root(client, request) -> str:
    """/<test name>: a node each test works under."""
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", request.node.name)
    path = f"/{name}"
    client.create(path)
    return path


def wait_until(predicate, timeout: float = 5.0, interval: float = 0.01, message: str = ""):
    """Polls predicate() until it is truthy; fails the test after timeout seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(message or f"condition not met within {timeout} s")
        time.sleep(interval)


def expire_session(client, via: str = "notice") -> None:
    """Makes the server expire client's session (its session timeout must be short): the
    client's stream goes silent. via="notice": the client keeps the stream and is told by the
    server (request_id 0, SESSION_EXPIRED); via="resume": the client gives up on the stream
    itself and its resume is refused later."""
    stream = client._stream
    assert stream is not None
    if via == "notice":
        client._timeout_ms = 60000  # no client-side silence detection meanwhile
    else:
        real_connect = client._connect
        until = time.monotonic() + 3 * client.session_timeout + 0.5

        def connect_later(endpoint):
            if time.monotonic() < until:
                return False
            return real_connect(endpoint)

        client._connect = connect_later
    stream.send = lambda request: None  # nothing reaches the server: no heartbeats


class socket_free_port:
    """A port nothing listens on (bound, not listening, for the with block)."""

    def __enter__(self) -> int:
        self._s = socket.socket()
        self._s.bind(("127.0.0.1", 0))
        return self._s.getsockname()[1]

    def __exit__(self, *exc):
        self._s.close()
