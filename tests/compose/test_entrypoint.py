"""The image's entrypoint (docker/entrypoint.py): secrets from files, the broker URL percent-encoded."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import redis
from kombu.utils.url import url_to_parts

SCRIPT = Path(__file__).resolve().parents[2] / "docker" / "entrypoint.py"
spec = importlib.util.spec_from_file_location("ingest_entrypoint", SCRIPT)
assert spec and spec.loader
entrypoint = importlib.util.module_from_spec(spec)
spec.loader.exec_module(entrypoint)

AWKWARD = 'p/a#s@s:w %41"rd'


def test_broker_url_survives_reserved_characters_for_kombu_and_redis_py():
    """A password with / # @ : space %41 and a quote reaches kombu and redis-py unchanged."""
    url = entrypoint.broker_url(AWKWARD, "redis:6379/0")
    assert url_to_parts(url).password == AWKWARD
    kwargs = redis.connection.parse_url(url)
    assert kwargs["password"] == AWKWARD and kwargs["host"] == "redis" and kwargs["db"] == 0


def test_redis_password_file_builds_the_broker_url(tmp_path):
    """REDIS_PASSWORD_FILE and REDIS_ADDRESS make INGEST_BROKER_URL; a trailing newline is dropped."""
    secret = tmp_path / "redis_password"
    secret.write_text(AWKWARD + "\n")
    env = {"REDIS_PASSWORD_FILE": str(secret), "REDIS_ADDRESS": "cache:6380/2"}
    entrypoint.apply_secrets(env)
    assert url_to_parts(env["INGEST_BROKER_URL"]).password == AWKWARD
    assert env["INGEST_BROKER_URL"].endswith("@cache:6380/2")


def test_a_set_broker_url_wins(tmp_path):
    """An explicit INGEST_BROKER_URL is kept (e.g. a managed Redis or RabbitMQ)."""
    secret = tmp_path / "pw"
    secret.write_text("x")
    env = {"REDIS_PASSWORD_FILE": str(secret), "INGEST_BROKER_URL": "amqp://rabbit//"}
    entrypoint.apply_secrets(env)
    assert env["INGEST_BROKER_URL"] == "amqp://rabbit//"


def test_file_companions_fill_settings(tmp_path):
    """INGEST_<NAME>_FILE sets INGEST_<NAME> from the file unless it is already set."""
    (tmp_path / "auth").write_text("ops:s3cret\n")
    (tmp_path / "token").write_text("from-file")
    env = {
        "INGEST_FLOWER_BASIC_AUTH_FILE": str(tmp_path / "auth"),
        "INGEST_API_TOKEN_FILE": str(tmp_path / "token"),
        "INGEST_API_TOKEN": "from-env",
    }
    entrypoint.apply_secrets(env)
    assert env["INGEST_FLOWER_BASIC_AUTH"] == "ops:s3cret"
    assert env["INGEST_API_TOKEN"] == "from-env"
