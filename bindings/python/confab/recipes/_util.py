"""Shared by the recipes: retrying across connection losses, Curator's protected creates."""

from __future__ import annotations

import time
import uuid

from confab.errors import (
    ConnectionLossError,
    NodeExistsError,
    NoNodeError,
    OperationTimeoutError,
)
from confab.models import CreateResult

# Curator's protection prefix: "_c_" + a UUID + "-" + the node's name. A create whose reply was
# lost (the stream broke) is found again by listing the parent for a child with that prefix.
PROTECTED_PREFIX = "_c_"
SEQUENCE_DIGITS = 10

RETRYABLE = (ConnectionLossError, OperationTimeoutError)


class Deadline:
    """A point in time, or none (wait forever)."""

    def __init__(self, timeout: float | None):
        self.at = None if timeout is None else time.monotonic() + timeout

    def left(self, cap: float | None = None) -> float | None:
        if self.at is None:
            return cap
        left = max(0.0, self.at - time.monotonic())
        return left if cap is None else min(left, cap)

    def expired(self) -> bool:
        return self.at is not None and time.monotonic() >= self.at


def retry(client, fn, *args, deadline: Deadline | None = None, **kwargs):
    """fn(*args, **kwargs), again after a connection loss or a timeout, until the deadline
    (default: the client's request timeout)."""
    deadline = deadline or Deadline(client.request_timeout)
    while True:
        try:
            return fn(*args, **kwargs)
        except RETRYABLE:
            if deadline.expired():
                raise
            client.wait_connected(deadline.left(1.0))


def protected_name(node_id: str, name: str) -> str:
    return f"{PROTECTED_PREFIX}{node_id}-{name}"


def sequence_of(name: str) -> int:
    """The sequence number a sequential create appended to a node name (-1 if none)."""
    tail = name[-SEQUENCE_DIGITS:]
    return int(tail) if len(tail) == SEQUENCE_DIGITS and tail.isdigit() else -1


def join(parent: str, child: str) -> str:
    return parent.rstrip("/") + "/" + child


def create_protected(client, parent: str, name: str, data: bytes = b"", *,
                     ephemeral: bool = True, sequential: bool = True,
                     deadline: Deadline | None = None, node_id: str | None = None) -> CreateResult:
    """Creates parent/_c_<uuid>-<name>[sequence] (parents as needed) exactly once, even when
    the stream breaks with the create in flight: before trying again, the parent is searched
    for a child carrying this create's protection prefix."""
    deadline = deadline or Deadline(client.request_timeout)
    node_id = node_id or str(uuid.uuid4())
    prefix = protected_name(node_id, "")
    path = join(parent, protected_name(node_id, name))
    searching = False
    while True:
        try:
            if searching:
                found = [c for c in client.get_children(parent) if c.startswith(prefix)]
                if found:
                    full = join(parent, found[0])
                    stat = client.exists(full)
                    if stat is not None:
                        return CreateResult(full, stat)
                searching = False
            return client.create(path, data, ephemeral=ephemeral, sequential=sequential,
                                 make_parents=True)
        except NoNodeError:
            if not searching:
                raise
            searching = False  # the parent is gone: create it again
        except NodeExistsError:
            if sequential:
                raise
            stat = client.exists(path)  # ours, from the lost attempt
            if stat is not None:
                return CreateResult(path, stat)
        except RETRYABLE:
            if deadline.expired():
                raise
            searching = True
            client.wait_connected(deadline.left(1.0))
