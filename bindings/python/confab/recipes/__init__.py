"""Recipes on top of confab.Client, following Apache Curator's conventions (node layouts in
bindings/python/README.md, so that other clients can interoperate)."""

from confab.recipes._util import PROTECTED_PREFIX, create_protected
from confab.recipes.config import (
    MISSING,
    ConfigCache,
    ConfigChange,
    ConfigKeyError,
    ConfigTypeError,
)
from confab.recipes.mutex import LockTimeoutError, Mutex
from confab.recipes.registry import (
    MembershipWatch,
    Registration,
    ServiceInstance,
    ServiceRegistry,
)

__all__ = [
    "ConfigCache", "ConfigChange", "ConfigKeyError", "ConfigTypeError", "MISSING",
    "Mutex", "LockTimeoutError",
    "ServiceRegistry", "ServiceInstance", "Registration", "MembershipWatch",
    "create_protected", "PROTECTED_PREFIX",
]
