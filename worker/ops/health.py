"""``ingest health``: exit 0 when this container's role is alive, 1 when not; for container healthchecks.

Without options it checks that the shared state Redis answers (every role needs it). ``--worker`` also
asks each Celery worker started on this host (found by its ``-n`` node name in ``/proc``) for a control
ping through the broker: a worker whose consumer is stuck, or that never started, fails. ``--http URL``
checks that a local server answers (any status below 500: Flower's and the exporter's auth answer 401).
"""

from __future__ import annotations

import os
import socket
import urllib.error
import urllib.request
from pathlib import Path

import click

from ingest_core.cliutil import settings_of

DEFAULT_PING_TIMEOUT = 5.0
"""Seconds a worker has to answer the control ping."""


def local_worker_nodenames(proc: str | os.PathLike[str] = "/proc", hostname: str | None = None) -> list[str]:
    """Node names (``-n``, ``%h`` expanded) of the ``celery ... worker`` processes running on this host."""
    host = hostname or socket.gethostname()
    names = set()
    for cmdline in Path(proc).glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        args = [a.decode(errors="replace") for a in argv if a]
        if "celery" not in " ".join(args[:3]) or "worker" not in args:
            continue
        for flag in ("-n", "--hostname"):
            if flag in args[:-1]:
                names.add(args[args.index(flag) + 1].replace("%h", host))
    return sorted(names)


def _check_redis(url: str) -> str | None:
    import redis

    try:
        redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3).ping()
    except (redis.RedisError, OSError) as exc:
        return f"state store unreachable: {exc}"
    return None


def _check_workers(timeout: float) -> str | None:
    names = local_worker_nodenames()
    if not names:
        return "no celery worker process on this host"
    from worker.celery_app import app

    replies = app.control.ping(destination=names, timeout=timeout)
    answered = {node for reply in replies for node in reply}
    missing = sorted(set(names) - answered)
    return f"no ping reply from {', '.join(missing)}" if missing else None


def _check_http(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:  # noqa: S310 - a local URL we were given
            status = resp.status
    except urllib.error.HTTPError as exc:
        status = exc.code
    except OSError as exc:
        return f"{url}: {exc}"
    return f"{url}: HTTP {status}" if status >= 500 else None


@click.command("health")
@click.option("--worker", "workers", is_flag=True, help="Also require this host's Celery workers to answer.")
@click.option("--http", "urls", multiple=True, help="Also require this URL to answer (status < 500).")
@click.option("--timeout", type=float, default=DEFAULT_PING_TIMEOUT, show_default=True)
@click.pass_context
def health_command(ctx: click.Context, workers: bool, urls: tuple[str, ...], timeout: float) -> None:
    """Exit 0 when Redis answers (and this host's workers, and the given URLs); for healthchecks."""
    settings = settings_of(ctx)
    # never starts an embedded Redis: a container without a configured broker is not healthy
    if not settings.broker_url:
        problems = ["INGEST_BROKER_URL is not set"]
    elif not settings.state_url:
        problems = ["no state store: INGEST_REDIS_URL is not set and the broker is not Redis"]
    else:
        problems = [_check_redis(settings.state_url)]
    if workers and not problems[0]:
        problems.append(_check_workers(timeout))
    problems += [_check_http(url) for url in urls]
    problems = [p for p in problems if p]
    if problems:
        for p in problems:
            click.echo(f"unhealthy: {p}", err=True)
        raise SystemExit(1)
    click.echo("ok")
