"""Small value types: Stat, call results, watch events, connection states, multi ops."""

from __future__ import annotations

import enum
from dataclasses import dataclass


@dataclass(frozen=True)
class Stat:
    """A node's metadata, as ZooKeeper's Stat. Times are milliseconds since the Unix epoch."""

    czxid: int = 0  # zxid of the transaction that created the node
    mzxid: int = 0  # zxid of the last data change
    pzxid: int = 0  # zxid of the last change of the children
    ctime: int = 0
    mtime: int = 0
    version: int = 0  # data changes
    cversion: int = 0  # children changes
    ephemeral_owner: int = 0  # owning session id, 0 for a persistent node
    data_length: int = 0
    num_children: int = 0

    @property
    def ephemeral(self) -> bool:
        return self.ephemeral_owner != 0

    @classmethod
    def _from_proto(cls, s) -> "Stat":
        return cls(s.czxid, s.mzxid, s.pzxid, s.ctime, s.mtime, s.version, s.cversion,
                   s.ephemeral_owner, s.data_length, s.num_children)


@dataclass(frozen=True)
class CreateResult:
    path: str  # the created path (with the sequence suffix for sequential nodes)
    stat: Stat

    @property
    def zxid(self) -> int:
        return self.stat.czxid


@dataclass(frozen=True)
class GetResult:
    data: bytes
    stat: Stat
    zxid: int  # the zxid of the state this read saw


@dataclass(frozen=True)
class SetResult:
    stat: Stat

    @property
    def zxid(self) -> int:
        return self.stat.mzxid


@dataclass(frozen=True)
class DeleteResult:
    zxid: int


@dataclass(frozen=True)
class CheckResult:
    pass


class EventType(enum.IntEnum):
    NODE_CREATED = 0
    NODE_DELETED = 1
    NODE_DATA_CHANGED = 2
    NODE_CHILDREN_CHANGED = 3
    # The watch may have missed changes (the server's history did not reach back far enough
    # when it was re-added after a reconnect, or the server dropped the session's watches):
    # re-read what it covers. ``path`` is the watched path.
    WATCHES_LOST = 4


@dataclass(frozen=True)
class WatchEvent:
    type: EventType
    path: str
    zxid: int  # the transaction that caused the event


class WatchKind(enum.IntEnum):
    DATA = 0  # one-shot, set by get/exists
    CHILD = 1  # one-shot, set by get_children
    PERSISTENT = 2  # data and child events of one node
    PERSISTENT_RECURSIVE = 3  # created/deleted/data events of a node and its subtree


class ConnectionState(enum.Enum):
    CONNECTED = "CONNECTED"  # the first session is open
    SUSPENDED = "SUSPENDED"  # the stream broke; reconnecting, the session may still be alive
    RECONNECTED = "RECONNECTED"  # a stream again: the same session, or a new one after LOST
    LOST = "LOST"  # the session expired: its ephemerals are gone (a new session follows)
    CLOSED = "CLOSED"  # close() was called


@dataclass(frozen=True)
class Op:
    """One op of a multi; build them with Op.create/Op.set/Op.delete/Op.check."""

    kind: str
    path: str
    data: bytes = b""
    version: int | None = None
    ephemeral: bool = False
    sequential: bool = False

    @staticmethod
    def create(path: str, data: bytes | str = b"", *, ephemeral: bool = False,
               sequential: bool = False) -> "Op":
        return Op("create", path, _to_bytes(data), None, ephemeral, sequential)

    @staticmethod
    def set(path: str, data: bytes | str, version: int | None = None) -> "Op":
        return Op("set", path, _to_bytes(data), version)

    @staticmethod
    def delete(path: str, version: int | None = None) -> "Op":
        return Op("delete", path, b"", version)

    @staticmethod
    def check(path: str, version: int) -> "Op":
        return Op("check", path, b"", version)


def _to_bytes(data) -> bytes:
    if data is None:
        return b""
    if isinstance(data, str):
        return data.encode("utf-8")
    return bytes(data)
