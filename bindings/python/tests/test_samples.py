"""The README's example and samples/superset_config.py, run as a user would."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from confab.recipes import ConfigTypeError

PACKAGE_ROOT = Path(__file__).resolve().parent.parent
SAMPLE = PACKAGE_ROOT / "samples" / "superset_config.py"


def test_readme_example_works_as_written(server):
    readme = (PACKAGE_ROOT / "README.md").read_text()
    example = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
    assert len(example.strip().splitlines()) == 5
    assert '"127.0.0.1:2281"' in example
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(example.replace("127.0.0.1:2281", server.endpoint), {})  # noqa: S102
    assert out.getvalue() == "b'world'\n"


def load_sample(monkeypatch, server, root: str):
    monkeypatch.setenv("CONFAB_ENDPOINTS", server.endpoint)
    monkeypatch.setenv("CONFAB_CONFIG_ROOT", root)
    name = f"superset_config_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(name, SAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_superset_config_sample(monkeypatch, server, client, root):
    cfg = f"{root}/superset/config"
    client.create(f"{cfg}/ROW_LIMIT", b"5000", make_parents=True)
    client.create(f"{cfg}/SQLLAB_TIMEOUT", b"300")
    client.create(f"{cfg}/FEATURE_FLAGS", json.dumps({"ALERT_REPORTS": True}).encode())
    client.create(f"{cfg}/CACHE_CONFIG", json.dumps({"CACHE_TYPE": "RedisCache"}).encode())
    conf = load_sample(monkeypatch, server, cfg)
    try:
        assert conf.ROW_LIMIT == 5000
        assert conf.SQLLAB_TIMEOUT == 300
        assert conf.FEATURE_FLAGS == {"ALERT_REPORTS": True}
        assert conf.CACHE_CONFIG == {"CACHE_TYPE": "RedisCache"}
        # Missing keys: the defaults.
        assert conf.SQL_MAX_ROW == 100000
        assert conf.SUPERSET_WEBSERVER_TIMEOUT == 60
        assert conf.WTF_CSRF_ENABLED is True
        settings = conf.settings()
        assert set(settings) == set(conf._defaults)
        # Feature flags are live.
        assert conf.GET_FEATURE_FLAGS_FUNC({"ALERT_REPORTS": False, "X": True}) == \
            {"ALERT_REPORTS": True, "X": True}
        client.set(f"{cfg}/FEATURE_FLAGS", json.dumps({"ALERT_REPORTS": False}).encode())
        assert conf._cache.sync(5)
        assert conf.GET_FEATURE_FLAGS_FUNC({"X": True}) == {"ALERT_REPORTS": False, "X": True}
    finally:
        conf._close()

    # A value of the wrong type stops the import, naming the key.
    client.set(f"{cfg}/ROW_LIMIT", b'"lots"')
    with pytest.raises(ConfigTypeError, match="ROW_LIMIT.*expected int, got str 'lots'"):
        load_sample(monkeypatch, server, cfg)


def test_superset_config_sample_as_a_script(server, client, root):
    cfg = f"{root}/config"
    client.create(f"{cfg}/ROW_LIMIT", b"1234", make_parents=True)
    env = dict(os.environ, CONFAB_ENDPOINTS=server.endpoint, CONFAB_CONFIG_ROOT=cfg,
               PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    done = subprocess.run([sys.executable, str(SAMPLE)], env=env, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert printed["ROW_LIMIT"] == 1234 and printed["SQLLAB_TIMEOUT"] == 30
