"""The fleet recipe stays true to the code: every compose command is a real ``ingest`` command line and
every variable our services read is a real setting."""

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
    """Every INGEST_* variable a service sets is a field of Settings; nothing else is set."""
    env = OURS[name].get("environment", {})
    assert set(env) <= SETTINGS, sorted(set(env) - SETTINGS)


def test_dockerfile_entrypoint_is_ingest_and_runs_unprivileged():
    """The image runs `ingest` (so compose commands are its arguments) as a non-root user."""
    dockerfile = (REPO / "Dockerfile").read_text()
    assert re.search(r'^ENTRYPOINT \["ingest"\]$', dockerfile, re.M)
    users = re.findall(r"^USER (\S+)$", dockerfile, re.M)
    assert users and users[-1] != "root"


def test_redis_has_a_password_persistence_and_a_healthcheck():
    """Redis requires a password, keeps an append-only file and reports health for depends_on."""
    redis = SERVICES["redis"]
    command = " ".join(redis["command"])
    assert "--requirepass" in command and "--appendonly yes" in command
    assert "ping" in " ".join(redis["healthcheck"]["test"])
    assert all(svc["depends_on"]["redis"]["condition"] == "service_healthy" for svc in OURS.values())


def test_flower_has_basic_auth_and_host_ports_are_loopback_only():
    """Flower gets basic auth; every published port binds 127.0.0.1 on the host."""
    assert "INGEST_FLOWER_BASIC_AUTH" in SERVICES["flower"]["environment"]
    for svc in SERVICES.values():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), port


def test_workers_can_be_scaled():
    """Worker services have no container name and no host port, so --scale can run many."""
    for name in ("fetch-worker", "process-worker"):
        assert "container_name" not in SERVICES[name] and "ports" not in SERVICES[name]
