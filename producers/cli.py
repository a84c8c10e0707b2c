"""Producer commands and the glue ``ingest submit``/``ingest run`` use to read every source.

- :func:`open_sources` turns command-line source options into one stream of URLs (plus hints);
- :func:`submit_sources` submits that stream with a progress bar and reports problems with documents;
- ``ingest watch`` polls feeds and sitemaps (a producer loop, not Celery beat: one process, conditional
  GET validators in Redis, nothing to schedule elsewhere) and queues URLs never seen;
- ``ingest serve`` runs the HTTP submission API (``producers.api``).
"""

from __future__ import annotations

import itertools
import re
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console

from ingest_core.settings import Settings

if TYPE_CHECKING:  # the sources import feedparser and lxml: only load them when a command needs them
    from producers.sources import ValidatorStore, WebSource

console = Console(stderr=True, soft_wrap=True)

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def parse_duration(value: str) -> float:
    """``90``, ``30s``, ``10m``, ``1.5h`` -> seconds."""
    m = _DURATION.match(value)
    if not m:
        raise ValueError(f"not a duration: {value!r} (use e.g. 30s, 10m, 1h)")
    seconds = float(m.group(1)) * _UNITS[m.group(2)]
    if seconds <= 0:
        raise ValueError("duration must be > 0")
    return seconds


def tracking_params(settings: Settings) -> frozenset[str]:
    """Extra tracking parameters from ``INGEST_TRACKING_PARAMS`` (lower-cased)."""
    return frozenset(p.strip().lower() for p in settings.tracking_params.split(",") if p.strip())


@dataclass
class Sources:
    """The URLs of every source named on a command line, as one stream."""

    stream: Iterator[str]
    label: str
    web: WebSource | None = None
    hints: dict[str, dict[str, Any]] = field(default_factory=dict)


def web_source(
    settings: Settings,
    *,
    feeds: Iterable[str] = (),
    sitemaps: Iterable[str] = (),
    feeds_files: Iterable[str] = (),
    validators: ValidatorStore | None = None,
) -> WebSource:
    """Feeds and sitemaps (a feeds file lists either, one a line) read with the safe fetcher."""
    from ingest_core.fetch import Fetcher
    from producers.sources import DocumentFetcher, WebSource, iter_files

    listed = list(iter_files(feeds_files))
    documents = DocumentFetcher(Fetcher.from_settings(settings), validators=validators)
    return WebSource(
        documents, feeds=[*feeds, *listed], sitemaps=list(sitemaps), max_depth=settings.sitemap_depth
    )


def open_sources(
    settings: Settings,
    *,
    urls: Iterable[str] = (),
    files: Iterable[str] = (),
    feeds: Iterable[str] = (),
    sitemaps: Iterable[str] = (),
    feeds_files: Iterable[str] = (),
    validators: ValidatorStore | None = None,
) -> Sources:
    """Chain positional URLs, URL files (``-`` is stdin), feeds and sitemaps, in that order."""
    from producers.sources import iter_files

    urls, files, feeds, sitemaps, feeds_files = (list(x) for x in (urls, files, feeds, sitemaps, feeds_files))
    kinds = [
        name
        for name, present in (
            ("cli", urls),
            ("stdin" if "-" in files else "file", files),
            ("feed", feeds or feeds_files),
            ("sitemap", sitemaps),
        )
        if present
    ]
    web = None
    parts: list[Iterable[str]] = [urls, iter_files(files)]
    if feeds or sitemaps or feeds_files:
        web = web_source(
            settings, feeds=feeds, sitemaps=sitemaps, feeds_files=feeds_files, validators=validators
        )
        parts.append(web)
    return Sources(itertools.chain(*parts), "+".join(kinds) or "cli", web, web.hints if web else {})


def report_problems(web: WebSource | None, limit: int = 50) -> None:
    """Print each document that could not be read, and the counts per reason."""
    if web is None or not web.problems:
        return
    for p in web.problems[:limit]:
        console.print(f"[yellow]source problem[/] {p.url}: {p.reason} {p.detail}")
    counts = {k.split(":", 1)[1]: v for k, v in web.counts.items() if k.startswith("problem:")}
    console.print("source problems: " + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())))


def submit_sources(
    sources: Sources,
    *,
    settings: Settings,
    force: bool = False,
    progress: bool = True,
    on_progress: Callable[[Any], None] | None = None,
    collect_ids: set[str] | None = None,
) -> Any:
    """Submit every URL of ``sources`` (streamed); returns the ``SubmitResult``. A long submission prints a
    plain progress line every few seconds on stderr (URLs read, new, seen, rejected, rate)."""
    from ingest_core.state import state_from_settings
    from producers import submit

    t0 = last = time.monotonic()

    def show(result: Any) -> None:
        nonlocal last
        now = time.monotonic()
        if progress and now - last >= 3.0:
            last = now
            console.print(
                f"submit: {result.submitted:,} URLs read, {result.accepted:,} new, "
                f"{result.adopted:,} pending before, {result.duplicates:,} seen, "
                f"{result.rejected_total:,} rejected "
                f"({result.submitted / max(now - t0, 1e-6):,.0f}/s)",
                markup=False,
                highlight=False,
            )
        if on_progress is not None:
            on_progress(result)

    return submit(
        sources.stream,
        source=sources.label,
        force=force,
        hints=sources.hints,
        max_url_length=settings.max_url_length,
        strip_params=tracking_params(settings),
        state=state_from_settings(settings),
        on_progress=show,
        collect_ids=collect_ids,
    )


def source_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add the options ``--feed``, ``--sitemap`` and ``--feeds-file`` to a command."""
    for option in reversed(
        (
            click.option("--feed", "feeds", multiple=True, help="Feed URL (RSS or Atom); repeatable."),
            click.option("--sitemap", "sitemaps", multiple=True, help="Sitemap (or index) URL; repeatable."),
            click.option("--feeds-file", "feeds_files", multiple=True, help="File of feed/sitemap URLs."),
        )
    ):
        command = option(command)
    return command


def submit_command_sources(
    settings: Settings,
    *,
    urls: Iterable[str],
    files: Iterable[str],
    force: bool,
    feeds: Iterable[str] = (),
    sitemaps: Iterable[str] = (),
    feeds_files: Iterable[str] = (),
    on_progress: Callable[[Any], None] | None = None,
    collect_ids: set[str] | None = None,
) -> tuple[Any, WebSource | None]:
    """What ``ingest submit``/``ingest run`` do with their sources: submit all, report document problems.
    Returns the ``SubmitResult`` and the feeds/sitemaps source (None without any)."""
    sources = open_sources(
        settings, urls=urls, files=files, feeds=feeds, sitemaps=sitemaps, feeds_files=feeds_files
    )
    try:
        result = submit_sources(
            sources, settings=settings, force=force, on_progress=on_progress, collect_ids=collect_ids
        )
    finally:
        report_problems(sources.web)
    return result, sources.web


# -- watch -------------------------------------------------------------------------------------------------


def _stoppable(stream: Iterable[str], stop: threading.Event) -> Iterator[str]:
    for url in stream:
        if stop.is_set():
            return
        yield url


def poll_once(
    settings: Settings,
    *,
    feeds: Iterable[str],
    sitemaps: Iterable[str],
    feeds_files: Iterable[str],
    validators: ValidatorStore,
    stop: threading.Event,
    submit_fn: Callable[..., Any] | None = None,
) -> tuple[WebSource, Any]:
    """One poll of every source; validators are stored only when the poll queued everything it read."""
    from producers import submit

    web = web_source(settings, feeds=feeds, sitemaps=sitemaps, feeds_files=feeds_files, validators=validators)
    try:
        result = (submit_fn or submit)(
            _stoppable(web, stop),
            source="watch",
            hints=web.hints,
            max_url_length=settings.max_url_length,
            strip_params=tracking_params(settings),
        )
    except BaseException:
        web.documents.discard()
        raise
    if stop.is_set():
        web.documents.discard()  # cut short: read these documents in full next time
    else:
        web.documents.commit()
    return web, result


@click.command()
@click.option("--feed", "feeds", multiple=True, help="Feed URL (RSS or Atom); repeatable.")
@click.option("--sitemap", "sitemaps", multiple=True, help="Sitemap or sitemap index URL; repeatable.")
@click.option("--feeds-file", "feeds_files", multiple=True, help="File of feed/sitemap URLs, one a line.")
@click.option("--every", default="10m", show_default=True, help="Time between polls (30s, 10m, 1h).")
@click.option("--once", is_flag=True, help="Poll once and exit (for cron or a test).")
@click.pass_context
def watch(
    ctx: click.Context,
    feeds: tuple[str, ...],
    sitemaps: tuple[str, ...],
    feeds_files: tuple[str, ...],
    every: str,
    once: bool,
) -> None:
    """Poll feeds and sitemaps on a schedule; queue only URLs never seen. Ctrl-C or SIGTERM stops it."""
    from ingest_core.cliutil import broker_settings
    from ingest_core.state import state_from_settings
    from producers import BrokerUnavailable
    from producers.sources import RedisValidators

    settings: Settings = ctx.obj["settings"]
    if not (feeds or sitemaps or feeds_files):
        raise click.UsageError("give --feed, --sitemap or --feeds-file FILE")
    try:
        interval = parse_duration(every)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--every") from None
    settings = broker_settings(ctx)
    state = state_from_settings(settings)
    validators = RedisValidators(state.r, prefix=settings.key_prefix)
    stop = threading.Event()

    def on_signal(signum: int, _frame: Any) -> None:
        if stop.is_set():  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        console.print(f"[bold]{signal.Signals(signum).name}: stopping after the current step[/]")
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    n = 0
    while not stop.is_set():
        n += 1
        t0 = time.monotonic()
        try:
            web, result = poll_once(
                settings,
                feeds=feeds,
                sitemaps=sitemaps,
                feeds_files=feeds_files,
                validators=validators,
                stop=stop,
            )
        except BrokerUnavailable as exc:
            console.print(f"[red]poll {n}: {exc}; trying again next poll[/]")
        else:
            report_problems(web)
            console.print(
                f"poll {n}: {web.counts['documents']} documents ({web.counts['not_modified']} unchanged), "
                f"{web.counts['urls']} URLs: {result.accepted} queued, {result.duplicates} seen, "
                f"{result.rejected_total} rejected, {len(web.problems)} problems "
                f"in {time.monotonic() - t0:.1f}s",
                highlight=False,
            )
        if once:
            break
        stop.wait(interval)
    console.print("watch stopped")


# -- serve -------------------------------------------------------------------------------------------------


@click.command()
@click.option("--host", default=None, help="Address to bind [INGEST_API_ADDRESS, default 127.0.0.1].")
@click.option("--port", type=int, default=None, help="Port [INGEST_API_PORT, default 8808].")
@click.pass_context
def serve(ctx: click.Context, host: str | None, port: int | None) -> None:
    """HTTP submission API: POST /v1/urls, GET /healthz, OpenAPI at /openapi.json (docs at /docs)."""
    import uvicorn

    from ingest_core.cliutil import broker_settings
    from producers.api import create_app, is_loopback

    settings: Settings = ctx.obj["settings"]
    host = host or settings.api_address
    port = port if port is not None else settings.api_port
    if not settings.api_token and not is_loopback(host):
        raise click.UsageError(f"binding {host} (not loopback) requires INGEST_API_TOKEN to be set")
    app = create_app(broker_settings(ctx))
    auth = "bearer token required" if settings.api_token else "no token"
    console.print(f"ingest serve on http://{host}:{port} ({auth})")
    uvicorn.run(app, host=host, port=port, log_level="warning")
