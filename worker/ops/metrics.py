"""Prometheus exporter (``ingest metrics``): the fleet's state, read from Redis and the broker per scrape.

Workers write nothing here: they count into Redis as they finish URLs (``StateStore.finish``), so one
exporter process sees the whole fleet, and a worker restart loses no samples. Exposed:

- ``ingest_queue_messages{queue}``: ready messages per queue (plus ``unacked`` on Redis);
- ``ingest_submitted_total`` and ``ingest_urls{state,reason}`` (a gauge: ``retry-failed`` moves URLs out
  of ``failed``), ``ingest_pending``;
- ``ingest_fetch_seconds`` and ``ingest_process_seconds`` histograms, ``ingest_fetched_bytes_total``;
- ``ingest_domain_failed_urls{domain}`` for the domains with the most failed URLs;
- ``ingest_exporter_up``: 0 when Redis or the broker could not be read for this scrape.
"""

from __future__ import annotations

import base64
import hmac
import logging
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import click
from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from ingest_core.state import (
    FETCH_SECONDS_BUCKETS,
    PROCESS_SECONDS_BUCKETS,
    TERMINAL_STATES,
    StateStore,
    summarize,
)
from worker.ops import is_loopback
from worker.ops.queues import queue_depths

log = logging.getLogger(__name__)

TOP_DOMAINS = 20
"""Failing domains exported (most failed URLs first)."""


def _histogram(
    name: str, doc: str, raw: dict[str, float], field: str, bounds: Iterable[float]
) -> HistogramMetricFamily:
    buckets, running = [], 0.0
    for le in [*(f"{b:g}" for b in bounds), "+Inf"]:
        running += raw.get(f"{field}:bucket:{le}", 0.0)  # stored per bucket; Prometheus wants cumulative
        buckets.append((le, running))
    return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=raw.get(f"{field}:sum", 0.0))


class IngestCollector(Collector):
    """Reads counters, histograms and queue depths on every scrape."""

    def __init__(self, state: StateStore, broker_url: str, *, top_domains: int = TOP_DOMAINS) -> None:
        self.state = state
        self.broker_url = broker_url
        self.top_domains = top_domains

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("ingest_exporter_up", "1 when Redis and the broker were read for this scrape")
        try:
            metrics = list(self._metrics())
        except Exception as exc:  # a scrape must answer even when Redis is down: say so in ingest_exporter_up
            log.warning("scrape failed: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from metrics

    def _metrics(self) -> Iterator[Metric]:
        queues = GaugeMetricFamily(
            "ingest_queue_messages", "Messages waiting in a broker queue", labels=["queue"]
        )
        for q, n in queue_depths(self.broker_url).items():
            queues.add_metric([q], n)
        yield queues

        summary = summarize(self.state.counters())
        yield CounterMetricFamily(
            "ingest_submitted", "URLs submitted (fleet-wide)", value=summary["submitted"]
        )
        urls = GaugeMetricFamily(
            "ingest_urls", "Submitted URLs by terminal state and reason", labels=["state", "reason"]
        )
        for st in TERMINAL_STATES:
            reasons = summary[f"{st}_reasons"]
            for reason, n in reasons.items():
                urls.add_metric([st, reason], n)
            rest = summary[st] - sum(reasons.values())
            if rest or not reasons:
                urls.add_metric([st, ""], rest)
        yield urls
        yield GaugeMetricFamily("ingest_pending", "Submitted URLs not yet terminal", value=summary["pending"])

        raw = self.state.metrics()
        yield _histogram(
            "ingest_fetch_seconds", "Fetch latency per URL", raw, "fetch_seconds", FETCH_SECONDS_BUCKETS
        )
        yield _histogram(
            "ingest_process_seconds",
            "Extract-to-store latency per URL",
            raw,
            "process_seconds",
            PROCESS_SECONDS_BUCKETS,
        )
        yield CounterMetricFamily(
            "ingest_fetched_bytes", "Decoded body bytes fetched", value=raw.get("fetched_bytes", 0.0)
        )
        f = self.state.frontier.stats(top=self.top_domains)
        for name, key, doc in (
            ("ingest_frontier_waiting", "waiting", "URLs waiting in the frontier for their host"),
            ("ingest_frontier_hosts", "hosts", "Hosts with URLs waiting"),
            ("ingest_frontier_hosts_ready", "hosts_ready", "Hosts whose next slot has come"),
            ("ingest_frontier_fetching", "fetching", "URLs leased to the fetch stage"),
            ("ingest_frontier_processing", "processing", "Fetched pages waiting for or in processing"),
            ("ingest_frontier_retrying", "retrying", "URLs backing off after a transient fault"),
        ):
            yield GaugeMetricFamily(name, doc, value=f[key])
        yield GaugeMetricFamily(
            "ingest_dispatch_paused",
            "1 while dispatch pauses for backpressure",
            value=1 if f["paused"] else 0,
        )
        busiest = GaugeMetricFamily(
            "ingest_frontier_host_waiting", "URLs waiting for the busiest hosts", labels=["host"]
        )
        for h in f["busiest"]:
            busiest.add_metric([h["host"]], h["waiting"])
        yield busiest
        domains = GaugeMetricFamily(
            "ingest_domain_failed_urls", "Failed URLs of the domains failing most", labels=["domain"]
        )
        for domain, n in self.state.failing_domains(self.top_domains):
            domains.add_metric([domain], n)
        yield domains


def basic_auth(app: Callable[..., Any], credentials: str) -> Callable[..., Any]:
    """Wrap a WSGI app so every request needs HTTP basic auth, one of ``user:password[,user:password]``."""
    allowed = [c.strip().encode() for c in credentials.split(",") if c.strip()]
    if not allowed or any(b":" not in c for c in allowed):
        raise ValueError("basic auth must be user:password[,user:password]")

    def guarded(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        header = environ.get("HTTP_AUTHORIZATION", "")
        given = b""
        if header.startswith("Basic "):
            try:
                given = base64.b64decode(header[6:], validate=True)
            except ValueError:
                given = b""
        # compare against every entry (no early exit) so timing does not tell which user exists
        ok = False
        for c in allowed:
            ok |= hmac.compare_digest(c, given)
        if not ok:
            headers = [("WWW-Authenticate", 'Basic realm="ingest"'), ("Content-Type", "text/plain")]
            start_response("401 Unauthorized", headers)
            return [b"authentication required\n"]
        return app(environ, start_response)

    return guarded


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:  # one line per scrape is noise
        pass


def serve(
    state: StateStore, broker_url: str, *, address: str, port: int, credentials: str = ""
) -> WSGIServer:
    """Start the exporter on a background thread; returns the server (``shutdown()`` stops it).

    Raises ValueError for a non-loopback ``address`` without ``credentials``: the metrics name the failing
    domains and the fleet's volume, not for anyone on the network (Flower and the API refuse the same).
    """
    if not is_loopback(address) and not credentials:
        raise ValueError(
            f"metrics on {address or 'all addresses'} need INGEST_METRICS_BASIC_AUTH=user:password "
            "(or bind them to 127.0.0.1)"
        )
    registry = CollectorRegistry(auto_describe=False)
    registry.register(IngestCollector(state, broker_url))
    app = make_wsgi_app(registry)
    if credentials:
        app = basic_auth(app, credentials)
    server = make_server(address, port, app, server_class=_ThreadingServer, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, daemon=True, name="metrics").start()
    return server


@click.command("metrics")
@click.option("--address", default=None, help="Listen address [INGEST_METRICS_ADDRESS, 127.0.0.1].")
@click.option("--port", type=int, default=None, help="Listen port [INGEST_METRICS_PORT, 9808].")
@click.pass_context
def metrics_command(ctx: click.Context, address: str | None, port: int | None) -> None:
    """Serve Prometheus metrics: queue depths, terminal states by reason, latencies, bytes, failing domains.

    Basic auth from INGEST_METRICS_BASIC_AUTH (user:password) when set; required off loopback.
    """
    from ingest_core.cliutil import broker_settings
    from ingest_core.state import state_from_settings

    settings = ctx.obj["settings"]
    address = address or settings.metrics_address
    port = settings.metrics_port if port is None else port
    if not is_loopback(address) and not settings.metrics_basic_auth:
        raise click.UsageError(
            f"metrics on {address or 'all addresses'} need INGEST_METRICS_BASIC_AUTH=user:password "
            "(or bind them to 127.0.0.1)"
        )
    settings = broker_settings(ctx)
    url = settings.broker_url
    state = state_from_settings(settings)
    try:
        server = serve(state, url, address=address, port=port, credentials=settings.metrics_basic_auth)
    except (OSError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"serving metrics on http://{address}:{server.server_port}/metrics", err=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    server.shutdown()
