"""The fleet recipe stays true to the code: every compose command is a real ``ingest`` command line, every
variable our services read is a real setting, and the container defects of issue 15 stay fixed. The fleet
itself runs in ``make compose-test`` (tests/compose/run.sh)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import click
import pytest
import yaml

from ingest_core.settings import Settings
from worker.cli import main

REPO = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((REPO / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
OURS = {
    name: svc
    for name, svc in SERVICES.items()
    if svc.get("build") or "article-ingest" in svc.get("image", "")
}
SETTINGS = {f"INGEST_{f.name.upper()}" for f in dataclasses.fields(Settings) if f.name != "extra"}
ENTRYPOINT_VARS = {"REDIS_PASSWORD_FILE", "REDIS_ADDRESS"}
"""Read by docker/entrypoint.py, which turns them into INGEST_BROKER_URL."""
DOCKERFILE = (REPO / "Dockerfile").read_text()


def test_compose_has_the_fleet_services():
    """redis, a fetch and a process worker, flower, the metrics exporter and a postgres profile are there."""
    assert {"redis", "fetch-worker", "process-worker", "flower", "metrics", "postgres"} <= set(SERVICES)
    assert SERVICES["postgres"]["profiles"] == ["postgres"]


@pytest.mark.parametrize("name", sorted(OURS))
def test_service_command_is_a_valid_ingest_command_line(name):
    """Each of our services runs an ingest subcommand with options that subcommand accepts."""
    command = OURS[name]["command"]
    assert command[0] in main.commands, f"{name}: no ingest subcommand {command[0]!r}"
    sub = main.commands[command[0]]
    try:
        sub.make_context(command[0], list(command[1:]))
    except click.UsageError as exc:
        pytest.fail(f"{name}: {exc}")


@pytest.mark.parametrize("name", sorted(OURS))
def test_service_environment_names_real_settings(name):
    """Every INGEST_* variable a service sets is a setting or a setting's _FILE companion."""
    env = set(OURS[name].get("environment", {})) - ENTRYPOINT_VARS
    names = {n.removesuffix("_FILE") if n.endswith("_FILE") else n for n in env}
    assert names <= SETTINGS, sorted(names - SETTINGS)


@pytest.mark.parametrize("name", sorted(OURS))
def test_settings_pass_through_and_no_command_line_overrides_them(name):
    """Our services read an env file, and no command line pins a setting (--fetch-concurrency 64 did)."""
    env_file = OURS[name]["env_file"]
    assert env_file and all(entry.get("required") is False for entry in env_file)
    pinned = {"--fetch-concurrency", "--concurrency", "-c", "--storage-url", "--broker-url"}
    assert not pinned & set(OURS[name]["command"])


@pytest.mark.parametrize("name", sorted(OURS))
def test_no_secret_in_the_environment(name):
    """Passwords arrive as compose secrets (files), never as environment values."""
    env = OURS[name].get("environment", {})
    assert "redis_password" in OURS[name]["secrets"]
    assert not any(key.endswith(("PASSWORD", "BASIC_AUTH", "TOKEN")) for key in env)
    assert "INGEST_BROKER_URL" not in env


def test_dockerfile_runs_ingest_unprivileged_from_a_chosen_base():
    """The image runs `ingest` through the entrypoint as a non-root user, on BASE_IMAGE (a full tag)."""
    assert re.search(r'^ENTRYPOINT \["ingest-entrypoint"\]$', DOCKERFILE, re.M)
    assert 'os.execvp("ingest"' in (REPO / "docker" / "entrypoint.py").read_text()
    users = re.findall(r"^USER (\S+)$", DOCKERFILE, re.M)
    assert users and users[-1] != "root"
    base = re.search(r"^ARG BASE_IMAGE=(\S+)$", DOCKERFILE, re.M)
    assert base and re.search(r":\d+\.\d+\.\d+-", base.group(1)), "pin the base to a full version tag"


def test_dockerfile_installs_dependencies_before_the_code_and_from_constraints():
    """Dependencies (pinned by constraints.txt) come before any COPY of our code: a code change keeps them."""
    lines = DOCKERFILE.splitlines()
    deps = next(i for i, line in enumerate(lines) if "-c /opt/constraints.txt" in line)
    first_code = next(
        i for i, line in enumerate(lines) if re.match(r"COPY (worker|ingest_core|producers) ", line)
    )
    assert deps < first_code
    for package in ("ingest_core", "worker", "producers"):
        assert re.search(rf"^COPY {package} ", DOCKERFILE, re.M), package
    pins = [line for line in (REPO / "constraints.txt").read_text().splitlines() if not line.startswith("#")]
    assert pins and all(re.fullmatch(r"[a-z0-9._-]+==[^=\s]+", pin) for pin in pins), pins[:3]


def test_no_anonymous_volume_and_a_healthcheck():
    """No VOLUME (it leaks an anonymous volume per `run --rm`); a HEALTHCHECK through the entrypoint."""
    assert not re.search(r"^VOLUME", DOCKERFILE, re.M)
    assert re.search(r'^HEALTHCHECK .*CMD \["ingest-entrypoint", "health"\]$', DOCKERFILE, re.M)


def test_redis_as_user_redis_with_password_persistence_and_a_memory_bound():
    """Redis runs as user redis with the secret as password, fsyncs always, refuses writes when full."""
    redis = SERVICES["redis"]
    command = " ".join(redis["command"])
    assert redis["user"] == "redis"
    assert '--requirepass "$$(cat /run/secrets/redis_password)"' in command
    assert "--appendonly yes" in command and "--appendfsync ${REDIS_APPENDFSYNC:-always}" in command
    assert "--maxmemory ${REDIS_MAXMEMORY:-" in command and "--maxmemory-policy noeviction" in command
    health = " ".join(redis["healthcheck"]["test"])
    assert "REDISCLI_AUTH=" in health and " -a " not in health and "ping" in health


def test_every_long_running_service_has_a_healthcheck():
    """Workers answer a control ping, Flower and the exporter their HTTP port; all wait for Redis."""
    for name in ("fetch-worker", "process-worker"):
        assert SERVICES[name]["healthcheck"]["test"] == ["CMD", "ingest-entrypoint", "health", "--worker"]
    for name in ("flower", "metrics"):
        assert SERVICES[name]["healthcheck"]["test"][:4] == ["CMD", "ingest-entrypoint", "health", "--http"]
    assert all(svc["depends_on"]["redis"]["condition"] == "service_healthy" for svc in OURS.values())


def _seconds(value: str) -> int:
    match = re.fullmatch(r"(\d+)s", value)
    assert match, value
    return int(match.group(1))


def test_stop_grace_outlasts_the_worker_shutdown():
    """The engine's SIGKILL comes after `ingest worker`'s own 60 s warm-shutdown timeout, not with it."""
    import inspect

    from worker.cli import stop_workers

    cli_timeout = inspect.signature(stop_workers).parameters["timeout"].default
    for name in ("fetch-worker", "process-worker"):
        assert _seconds(SERVICES[name]["stop_grace_period"]) > cli_timeout + 5


def test_workers_have_cpu_and_memory_limits():
    """Each worker has a CPU and a memory limit (the process pool is sized from the CPU one)."""
    for name in ("fetch-worker", "process-worker"):
        limits = SERVICES[name]["deploy"]["resources"]["limits"]
        assert limits["cpus"] and limits["memory"]


def test_flower_has_basic_auth_a_db_dir_and_host_ports_are_loopback_only():
    """Flower gets basic auth and a state file in a volume of its own; published ports bind 127.0.0.1."""
    flower = SERVICES["flower"]
    assert flower["environment"]["INGEST_FLOWER_BASIC_AUTH_FILE"] == "/run/secrets/flower_basic_auth"
    db = flower["environment"]["INGEST_FLOWER_DB"]
    assert any(db.startswith(v.split(":")[1] + "/") for v in flower["volumes"])
    assert SERVICES["metrics"]["environment"]["INGEST_METRICS_BASIC_AUTH_FILE"]
    for svc in SERVICES.values():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), port


def test_workers_can_be_scaled():
    """Worker services have no container name and no host port, so --scale can run many."""
    for name in ("fetch-worker", "process-worker"):
        assert "container_name" not in SERVICES[name] and "ports" not in SERVICES[name]
