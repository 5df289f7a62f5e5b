"""Confab's Python client: sessions over one gRPC stream, CRUD, watches, recipes.

    from confab import Client
    with Client("127.0.0.1:2281") as client:
        client.create("/hello", b"world", ephemeral=True)
        print(client.get("/hello").data)
"""

# The generated stubs (confab.v1) live in the build tree, in OUT/confab/v1 (see
# build_stubs.sh): let every `confab` directory on sys.path contribute to this package.
from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)  # noqa: F821

from confab.errors import (  # noqa: E402
    BadVersionError,
    ClientClosedError,
    ConfabError,
    ConnectionLossError,
    InternalError,
    InvalidArgumentError,
    InvalidPathError,
    NoChildrenForEphemeralsError,
    NodeExistsError,
    NoNodeError,
    NotEmptyError,
    OperationTimeoutError,
    RuntimeInconsistencyError,
    SessionExpiredError,
    TooLargeError,
    UnavailableError,
    UnimplementedError,
)
from confab.models import (  # noqa: E402
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
)
from confab.client import Client, WatchHandle, WatchStream  # noqa: E402

__version__ = "0.1.0"

__all__ = [
    "Client", "WatchHandle", "WatchStream",
    "Stat", "CreateResult", "GetResult", "SetResult", "DeleteResult", "CheckResult", "Op",
    "EventType", "WatchEvent", "WatchKind", "ConnectionState",
    "ConfabError", "NoNodeError", "NodeExistsError", "BadVersionError", "NotEmptyError",
    "NoChildrenForEphemeralsError", "SessionExpiredError", "InvalidPathError", "TooLargeError",
    "InvalidArgumentError", "RuntimeInconsistencyError", "UnavailableError", "InternalError",
    "UnimplementedError", "ConnectionLossError", "OperationTimeoutError", "ClientClosedError",
]
