"""superset_config.py with its settings in Confab.

Apache Superset imports ``superset_config`` (or the file SUPERSET_CONFIG_PATH names) and copies
its UPPERCASE globals over its defaults. This one fills those globals from a ConfigCache over a
Confab subtree, one JSON value per node, with a default for every key that is not set:

    /superset/config/ROW_LIMIT          5000
    /superset/config/SQLLAB_TIMEOUT     300
    /superset/config/FEATURE_FLAGS      {"ALERT_REPORTS": true}

A value of the wrong type stops Superset at startup with an error naming the key, the expected
type and the value. Feature flags stay live: Superset calls GET_FEATURE_FLAGS_FUNC on every
lookup, and it reads the cache, which follows the subtree. The other settings are read when
Superset starts.

Environment: CONFAB_ENDPOINTS (default 127.0.0.1:2281), CONFAB_CONFIG_ROOT (default
/superset/config), CONFAB_SESSION_TIMEOUT (seconds, default 10).

Run it as a script to print the settings it would give Superset:
    python3 samples/superset_config.py
"""

from __future__ import annotations

import atexit
import json
import os

from confab import Client
from confab.recipes import ConfigCache

# name: (type, default). Types are JSON's: int, float, str, bool, dict, list.
_defaults = {
    "ROW_LIMIT": (int, 50000),
    "SAMPLES_ROW_LIMIT": (int, 1000),
    "SQL_MAX_ROW": (int, 100000),
    "SQLLAB_TIMEOUT": (int, 30),
    "SQLLAB_ASYNC_TIME_LIMIT_SEC": (int, 6 * 60 * 60),
    "SUPERSET_WEBSERVER_TIMEOUT": (int, 60),
    "SQLALCHEMY_DATABASE_URI": (str, "sqlite:////var/lib/superset/superset.db"),
    "SECRET_KEY": (str, os.environ.get("SUPERSET_SECRET_KEY", "")),
    "MAPBOX_API_KEY": (str, ""),
    "WTF_CSRF_ENABLED": (bool, True),
    "CACHE_CONFIG": (dict, {"CACHE_TYPE": "NullCache"}),
    "FEATURE_FLAGS": (dict, {}),
}

_client = Client(os.environ.get("CONFAB_ENDPOINTS", "127.0.0.1:2281"),
                 session_timeout=float(os.environ.get("CONFAB_SESSION_TIMEOUT", "10")))
_cache = ConfigCache(_client, os.environ.get("CONFAB_CONFIG_ROOT", "/superset/config")).start()


def _close() -> None:
    _cache.close()
    _client.close()


atexit.register(_close)


def _setting(name: str):
    kind, default = _defaults[name]
    return _cache.get(name, kind, default=default)


for _name in _defaults:
    globals()[_name] = _setting(_name)


def GET_FEATURE_FLAGS_FUNC(feature_flags: dict) -> dict:  # noqa: N802 - Superset's name
    """Superset's hook, called on every feature flag lookup: the live flags from Confab over
    Superset's defaults."""
    return {**feature_flags, **_setting("FEATURE_FLAGS")}


def settings() -> dict:
    """The UPPERCASE settings this module gives Superset (as Superset would pick them up)."""
    return {k: v for k, v in globals().items() if k.isupper() and not callable(v)}


if __name__ == "__main__":
    print(json.dumps(settings(), indent=2, sort_keys=True))
