"""``ingest flower``: Flower on our Celery app, with basic auth that also covers ``/metrics``.

Flower only guards pages marked ``@authenticated``; its ``/metrics`` is not (flower issue #1342), so anyone
who reaches the port reads task names and worker host names. We run Flower in this process and mark that
handler authenticated before it starts. Basic auth comes from ``INGEST_FLOWER_BASIC_AUTH`` (never from the
command line, where ``ps`` shows it) and is required when Flower listens beyond loopback.
"""

from __future__ import annotations

from typing import Any

import click

from worker.ops import is_loopback


def protect_metrics() -> None:
    """Require the configured authentication on Flower's ``/metrics`` too (idempotent)."""
    import tornado.web
    from flower.views.monitor import Metrics

    if not getattr(Metrics.get, "_ingest_protected", False):
        guarded: Any = tornado.web.authenticated(Metrics.get)
        guarded._ingest_protected = True
        Metrics.get = guarded


def flower_argv(
    *, address: str, port: int, basic_auth: str, db: str, save_interval_ms: int = 60_000
) -> list[str]:
    """Arguments for ``celery flower`` (Flower's own options); raises ValueError on an unsafe setup."""
    if not is_loopback(address) and not basic_auth:
        raise ValueError(
            f"Flower on {address or 'all addresses'} needs INGEST_FLOWER_BASIC_AUTH=user:password "
            "(or bind it to 127.0.0.1)"
        )
    argv = ["flower", f"--address={address}", f"--port={port}"]
    if basic_auth:
        argv.append(f"--basic-auth={basic_auth}")
    if db:
        argv += ["--persistent=True", f"--db={db}", f"--state_save_interval={save_interval_ms}"]
    return argv


@click.command("flower")
@click.option("--address", default=None, help="Listen address [INGEST_FLOWER_ADDRESS, 127.0.0.1].")
@click.option("--port", type=int, default=None, help="Listen port [INGEST_FLOWER_PORT, 5555].")
@click.option("--db", default=None, help="Keep Flower's state in this file [INGEST_FLOWER_DB].")
@click.pass_context
def flower_command(ctx: click.Context, address: str | None, port: int | None, db: str | None) -> None:
    """Start Flower on our app (tasks, workers, /api, /metrics); basic auth: INGEST_FLOWER_BASIC_AUTH."""
    from ingest_core.cliutil import broker_settings

    settings = ctx.obj["settings"]
    try:
        argv = flower_argv(
            address=settings.flower_address if address is None else address,
            port=settings.flower_port if port is None else port,
            basic_auth=settings.flower_basic_auth,
            db=settings.flower_db if db is None else db,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    broker_settings(ctx)  # the app module reads INGEST_BROKER_URL, resolved (or started) here
    protect_metrics()
    from worker.celery_app import app

    app.start(argv)
