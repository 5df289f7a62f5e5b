"""ServiceRegistry: service discovery with ephemeral sequential member nodes.

Layout (see bindings/python/README.md):

    <base_path>/<service>                                  persistent, created on demand
    <base_path>/<service>/_c_<uuid>-member-<10 digits>     EPHEMERAL_SEQUENTIAL, one per member

A member node's data is Curator's ServiceInstance JSON: {"name", "id", "address", "port",
"payload", "registrationTimeUTC", "serviceType": "DYNAMIC"}; "id" is the <uuid> of the
protection prefix. Members are listed in sequence order (the order they registered in).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable

from confab.errors import ConfabError, NoNodeError
from confab.models import ConnectionState, EventType
from confab.recipes._util import (
    PROTECTED_PREFIX,
    RETRYABLE,
    Deadline,
    create_protected,
    join,
    retry,
    sequence_of,
)

log = logging.getLogger("confab.recipes")

MEMBER_NAME = "member-"


@dataclass(frozen=True)
class ServiceInstance:
    name: str  # the service
    id: str
    address: str
    port: int | None
    payload: Any
    registration_time_utc: int  # milliseconds since the Unix epoch
    path: str  # the member node
    sequence: int

    def to_json(self) -> bytes:
        return json.dumps({
            "name": self.name, "id": self.id, "address": self.address, "port": self.port,
            "payload": self.payload, "registrationTimeUTC": self.registration_time_utc,
            "serviceType": "DYNAMIC",
        }, sort_keys=True).encode()

    @classmethod
    def from_node(cls, path: str, data: bytes) -> "ServiceInstance":
        name = path.rsplit("/", 1)[1]
        try:
            d = json.loads(data.decode("utf-8")) if data else {}
        except (UnicodeDecodeError, ValueError):
            d = {}
        if not isinstance(d, dict):
            d = {}
        node_id = name[len(PROTECTED_PREFIX):len(PROTECTED_PREFIX) + 36] \
            if name.startswith(PROTECTED_PREFIX) else name
        return cls(name=str(d.get("name", path.rsplit("/", 2)[1])), id=str(d.get("id", node_id)),
                   address=str(d.get("address", "")), port=d.get("port"),
                   payload=d.get("payload"),
                   registration_time_utc=int(d.get("registrationTimeUTC", 0) or 0),
                   path=path, sequence=sequence_of(name))


class Registration:
    """One registered member; unregister() (or leaving a with block) removes it. It is created
    again, under the new session, if the session is lost."""

    def __init__(self, registry: "ServiceRegistry", service: str, instance_id: str,
                 address: str, port: int | None, payload: Any):
        self._registry = registry
        self.service = service
        self.id = instance_id
        self.address = address
        self.port = port
        self.payload = payload
        self.path: str | None = None
        self._active = True

    def _data(self) -> bytes:
        return ServiceInstance(self.service, self.id, self.address, self.port, self.payload,
                               int(time.time() * 1000), "", -1).to_json()

    def unregister(self) -> None:
        self._active = False
        self._registry._forget(self)
        path, self.path = self.path, None
        if path is None:
            return
        try:
            retry(self._registry._client, self._registry._client.delete, path)
        except NoNodeError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.unregister()


class MembershipWatch:
    """Calls callback(members) at once and after every change of a service's members (from a
    thread of its own, changes coalesced). close() stops it."""

    def __init__(self, registry: "ServiceRegistry", service: str,
                 callback: Callable[[list[ServiceInstance]], None]):
        self._registry = registry
        self._service = service
        self._callback = callback
        self._stop = threading.Event()
        self._stream = registry._client.watch(registry.service_path(service))
        self._last: list[ServiceInstance] | None = None
        self._thread = threading.Thread(target=self._run, name=f"confab-members-{service}",
                                        daemon=True)
        self._thread.start()

    def _run(self) -> None:
        refresh = True
        while not self._stop.is_set():
            if refresh:
                try:
                    members = self._registry.members(self._service)
                except ConfabError as e:
                    log.info("membership of %s: %s; trying again", self._service, e)
                    self._registry._client.wait_connected(1.0)
                    continue
                if self._last is None or [m.path for m in members] != \
                        [m.path for m in self._last]:
                    self._last = members
                    try:
                        self._callback(members)
                    except Exception:  # noqa: BLE001
                        log.exception("membership callback failed")
            event = self._stream.poll(0.5)
            if event is None:
                refresh = False
                if self._stream._closed:
                    return
                continue
            refresh = event.type in (EventType.NODE_CHILDREN_CHANGED, EventType.NODE_CREATED,
                                     EventType.NODE_DELETED, EventType.WATCHES_LOST)
            while (more := self._stream.poll(0)) is not None:  # coalesce a burst
                refresh = True if more.type != EventType.NODE_DATA_CHANGED else refresh

    def close(self) -> None:
        self._stop.set()
        self._stream.close()
        if threading.current_thread() is not self._thread:
            self._thread.join(5.0)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class ServiceRegistry:
    """Service discovery over a Client (Curator's conventions; layout in the module doc)."""

    def __init__(self, client, base_path: str = "/services"):
        self._client = client
        self.base_path = "/" + base_path.strip("/")
        self._lock = threading.Lock()
        self._registrations: list[Registration] = []
        self._lost = False
        client.add_state_listener(self._on_state)

    def service_path(self, service: str) -> str:
        if not service or "/" in service:
            raise ValueError(f"service name {service!r}: not empty and without '/'")
        return join(self.base_path, service)

    def register(self, service: str, address: str, port: int | None = None,
                 payload: Any = None, *, timeout: float | None = None) -> Registration:
        """Adds a member (an ephemeral sequential node, gone when the session is)."""
        reg = Registration(self, service, "", address, port, payload)
        self._create(reg, Deadline(timeout if timeout is not None
                                   else self._client.request_timeout))
        with self._lock:
            self._registrations.append(reg)
        return reg

    def _create(self, reg: Registration, deadline: Deadline) -> None:
        reg.id = reg.id or str(uuid.uuid4())
        created = create_protected(self._client, self.service_path(reg.service), MEMBER_NAME,
                                   reg._data(), deadline=deadline, node_id=reg.id)
        reg.path = created.path

    def _forget(self, reg: Registration) -> None:
        with self._lock:
            if reg in self._registrations:
                self._registrations.remove(reg)

    def members(self, service: str) -> list[ServiceInstance]:
        """The current members, in registration (sequence) order."""
        base = self.service_path(service)
        try:
            names = retry(self._client, self._client.get_children, base)
        except NoNodeError:
            return []
        names = [n for n in names if sequence_of(n) >= 0]
        futures = [(n, self._client.get_async(join(base, n))) for n in names]
        out = []
        for name, future in futures:
            try:
                got = future.result(self._client.request_timeout)
            except NoNodeError:
                continue  # left meanwhile
            except RETRYABLE:
                return self.members(service)
            out.append(ServiceInstance.from_node(join(base, name), got.data))
        out.sort(key=lambda m: m.sequence)
        return out

    def watch(self, service: str,
              callback: Callable[[list[ServiceInstance]], None]) -> MembershipWatch:
        """callback(members) now and after every membership change."""
        return MembershipWatch(self, service, callback)

    def close(self) -> None:
        """Unregisters every member registered through this registry."""
        self._client.remove_state_listener(self._on_state)
        with self._lock:
            regs = list(self._registrations)
        for reg in regs:
            try:
                reg.unregister()
            except ConfabError as e:
                log.info("unregistering %s: %s", reg.path, e)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _on_state(self, state: ConnectionState) -> None:
        if state == ConnectionState.LOST:
            self._lost = True
        elif state == ConnectionState.RECONNECTED and self._lost:
            self._lost = False
            # The session's ephemerals went with it: register again (not on the event thread).
            threading.Thread(target=self._reregister, name="confab-reregister",
                             daemon=True).start()

    def _reregister(self) -> None:
        with self._lock:
            regs = [r for r in self._registrations if r._active]
        for reg in regs:
            try:
                self._create(reg, Deadline(self._client.request_timeout))
                log.info("re-registered %s as %s after the session was lost", reg.service,
                         reg.path)
            except ConfabError as e:
                log.warning("re-registering %s: %s", reg.service, e)
