"""Dead letters: every URL whose last end was ``failed`` keeps its reason, attempts and time (bounded).

``retry_failed`` queues them again. Counts stay consistent: a retried URL leaves ``failed`` (and
``failed:<reason>``) when it is queued, so it is pending meanwhile, and is counted in whatever terminal
state it reaches next; fleet-wide ``submitted`` does not grow, since the URL was submitted once. The retry
runs as its own batch (``ingest stats --batch``), which adds up on its own.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass
from urllib.parse import urlsplit

import click
import redis

from ingest_core.state import StateStore

CHUNK_SIZE = 1000
"""Dead letters claimed and sent per round trip."""


@dataclass
class RetryResult:
    """What ``retry_failed`` did."""

    batch: str
    requeued: int = 0
    skipped: int = 0
    """Dead letters that were no longer failed when claimed (retried or resubmitted meanwhile)."""


def retry_failed(state: StateStore, *, reason: str | None = None, limit: int | None = None) -> RetryResult:
    """Queue failed URLs (optionally of one reason) into the frontier again, in a new batch."""
    from producers import BrokerUnavailable, check_state

    check_state(state)
    letters = state.dead_letters(reason=reason, limit=limit)
    result = RetryResult(batch=f"retry-{uuid.uuid4().hex}")
    for start in range(0, len(letters), CHUNK_SIZE):
        chunk = letters[start : start + CHUNK_SIZE]
        jobs = [
            {"url": e["url"], "id": e["id"], "host": urlsplit(e["url"]).hostname or "", "source": "retry"}
            for e in chunk
        ]
        try:
            done = state.frontier.enqueue(
                jobs, batch=result.batch, retry_failed=True, batch_ttl=state.batch_ttl
            )
        except (OSError, redis.RedisError) as exc:
            raise BrokerUnavailable(f"state store lost while re-queueing: {exc}") from exc
        result.requeued += len(done.accepted)
        result.skipped += len(chunk) - len(done.accepted)
    return result


# -- commands ----------------------------------------------------------------------------------------------


def _state(ctx: click.Context) -> StateStore:
    from ingest_core.cliutil import broker_settings
    from ingest_core.state import state_from_settings

    return state_from_settings(broker_settings(ctx))


def print_dead_letters(ctx: click.Context, reason: str | None, limit: int, as_json: bool) -> None:
    """One line per currently failed URL: attempts, reason, age, URL (``ingest failures --dead``)."""
    now = time.time()
    for e in _state(ctx).dead_letters(reason=reason, limit=limit):
        if as_json:
            click.echo(json.dumps(e))
        else:
            age = f"{int(now - e.get('at', now))}s ago"
            click.echo(f"{e['attempts']:>3}x {e['reason']:22} {age:>10}  {e['url']}  {e.get('detail', '')}")


@click.command("retry-failed")
@click.option("--reason", default=None, help="Only URLs whose last failure has this reason code.")
@click.option("--limit", type=int, default=None, help="Re-queue at most this many (newest failures first).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def retry_failed_command(ctx: click.Context, reason: str | None, limit: int | None, as_json: bool) -> None:
    """Re-queue failed URLs (dead letters); they leave ``failed`` and end in a new terminal state."""
    from producers import BrokerUnavailable

    state = _state(ctx)
    try:
        result = retry_failed(state, reason=reason, limit=limit)
    except BrokerUnavailable as exc:
        click.echo(f"error: {exc}", err=True)
        raise SystemExit(3) from None
    if as_json:
        out = {"batch": result.batch, "requeued": result.requeued, "skipped": result.skipped}
        click.echo(json.dumps(out))
    else:
        click.echo(f"batch {result.batch}: {result.requeued} re-queued, {result.skipped} no longer failed")
