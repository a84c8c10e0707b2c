import pytest

from ingest_core.settings import DEFAULT_MAX_BYTES, DEFAULT_STORAGE_URL, Settings


def test_defaults_apply_without_environment():
    """With no INGEST_* variables, every setting is its named default."""
    s = Settings.from_env({})
    assert s.storage_url == DEFAULT_STORAGE_URL == "./data/records"
    assert s.max_bytes == DEFAULT_MAX_BYTES
    assert s.allow_private_networks is False
    assert s.broker_url == ""


def test_environment_overrides_defaults_with_types():
    """INGEST_* variables override defaults and are converted to the setting's type."""
    s = Settings.from_env(
        {
            "INGEST_BROKER_URL": "redis://h:1/2",
            "INGEST_ALLOW_PRIVATE_NETWORKS": "true",
            "INGEST_MAX_BYTES": "1024",
            "INGEST_STORAGE_URL": "/srv/records",
        }
    )
    assert (s.broker_url, s.allow_private_networks, s.max_bytes, s.storage_url) == (
        "redis://h:1/2",
        True,
        1024,
        "/srv/records",
    )


def test_flags_override_environment():
    """Keyword overrides (CLI flags) win over the environment; None means 'flag not given'."""
    s = Settings.from_env({"INGEST_STORAGE_URL": "/a"}, storage_url="/b", broker_url=None)
    assert s.storage_url == "/b"


def test_bad_value_names_the_variable():
    """A value that does not parse is an error naming the variable."""
    with pytest.raises(ValueError, match="INGEST_ALLOW_PRIVATE_NETWORKS"):
        Settings.from_env({"INGEST_ALLOW_PRIVATE_NETWORKS": "perhaps"})


def test_state_store_defaults_to_redis_broker():
    """INGEST_REDIS_URL defaults to the broker when the broker is Redis, and to nothing otherwise."""
    assert Settings.from_env({"INGEST_BROKER_URL": "redis://b:6379/0"}).state_url == "redis://b:6379/0"
    assert Settings.from_env({"INGEST_BROKER_URL": "amqp://guest@b//"}).state_url == ""
    assert Settings.from_env(
        {"INGEST_BROKER_URL": "amqp://b//", "INGEST_REDIS_URL": "redis://s/1"}
    ).state_url == ("redis://s/1")
