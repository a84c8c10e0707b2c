import jsonschema
import pytest

from ingest_core.settings import Settings
from ingest_core.state import summarize
from tests.faultserver import FaultServer
from worker.pipeline.store import read_records
from worker.record import record_schema
from worker.runner import Pipeline


@pytest.fixture
def pipeline(redis_url, redis_client, tmp_path):
    s = Settings.from_env(
        {},
        redis_url=redis_url,
        storage_url=str(tmp_path / "records"),
        allow_private_networks=True,
        key_prefix="runner",
    )
    p = Pipeline.from_settings(s)
    yield p
    p.store.close()


def test_run_one_stores_a_schema_valid_record(pipeline, page_server, tmp_path):
    """One URL through the whole pipeline in process gives one record valid against schema v1."""
    outcome = pipeline.run_one(f"{page_server}/articles/story-3.html", source="api")
    assert outcome.state == "stored", outcome
    pipeline.store.close()
    [record] = list(read_records(tmp_path / "records"))
    jsonschema.validate(record, record_schema())
    assert record["title"] == "Story 3: the station plan"
    assert record["author"] == "Devi Tanaka"
    assert record["published"].startswith("2026-03-04")
    assert record["language"] == "en" and record["word_count"] > 200
    assert record["url"] == record["final_url"] == f"{page_server}/articles/story-3.html"
    assert record["source"] == "api" and record["status"] == 200
    assert "Read more from" not in record["text"] and "Copyright" not in record["text"]


def test_same_text_at_another_url_is_duplicate_of_first(pipeline, page_server):
    """A second URL with identical text ends 'duplicate' pointing at the first record's id."""
    first = pipeline.run_one(f"{page_server}/articles/story-0.html")
    second = pipeline.run_one(f"{page_server}/articles/copy-of-story-0.html")
    assert first.state == "stored"
    assert (second.state, second.reason, second.record["duplicate_of"]) == (
        "duplicate",
        "same_text",
        first.record["id"],
    )


@pytest.mark.parametrize(
    ("path", "state", "reason"),
    [
        ("/articles/missing.html", "failed", "http_404"),
        ("/pdf", "skipped", "not_html"),
        ("/empty", "skipped", "no_text"),
    ],
)
def test_bad_pages_end_with_specific_reasons(pipeline, page_server, path, state, reason):
    """A 404, a non-HTML response and an empty page each end in their own recorded state and reason."""
    outcome = pipeline.run_one(page_server + path)
    assert (outcome.state, outcome.reason) == (state, reason)
    s = summarize(pipeline.state.counters("inline"))
    assert s[f"{state}_reasons"] == {reason: 1}
    assert pipeline.state.failures()[0]["reason"] == reason


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://example.com/a", "unsupported_scheme"),
        ("not a url", "invalid_url"),
        ("http://", "missing_host"),
    ],
)
def test_bad_urls_are_skipped_with_reason(pipeline, url, reason):
    """Malformed URLs and non-http schemes are skipped with a reason, counted, and never fetched."""
    outcome = pipeline.run_one(url)
    assert (outcome.state, outcome.reason) == ("skipped", reason)
    assert summarize(pipeline.state.counters("inline"))["skipped_reasons"] == {reason: 1}


def test_unknown_host_fails_with_dns_reason(pipeline):
    """A host that does not resolve fails as a DNS error, not a crash."""
    outcome = pipeline.run_one("http://no-such-host.invalid/article")
    assert outcome.state == "failed" and outcome.reason == "dns_error"


def test_private_address_refused_by_default(redis_url, redis_client, tmp_path, page_server):
    """Without INGEST_ALLOW_PRIVATE_NETWORKS a loopback URL fails as blocked_address, unfetched."""
    s = Settings.from_env({}, redis_url=redis_url, storage_url=str(tmp_path / "r"), key_prefix="runner2")
    outcome = Pipeline.from_settings(s).run_one(f"{page_server}/articles/story-1.html")
    assert (outcome.state, outcome.reason) == ("failed", "blocked_address")


# -- conditional GET on re-fetch -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def fault_server():
    with FaultServer("127.0.0.1") as srv:
        yield srv


def _recrawl_pipeline(redis_url, tmp_path, recrawl_ttl: int) -> Pipeline:
    s = Settings.from_env(
        {},
        redis_url=redis_url,
        storage_url=str(tmp_path / "records"),
        allow_private_networks=True,
        recrawl_ttl=recrawl_ttl,
        key_prefix=f"cond{recrawl_ttl}",
    )
    return Pipeline.from_settings(s)


def test_refetch_of_unchanged_page_is_duplicate_not_modified(redis_url, redis_client, tmp_path, fault_server):
    """With a recrawl TTL, a stored page is re-fetched with its validators; the 304 ends duplicate."""
    fault_server.reset()
    p = _recrawl_pipeline(redis_url, tmp_path, recrawl_ttl=3600)
    first = p.run_one(fault_server.url("/etag"))
    second = p.run_one(fault_server.url("/etag"), force=True)
    p.store.close()
    assert first.state == "stored"
    assert (second.state, second.reason) == ("duplicate", "not_modified")
    pages = [headers for path, headers in fault_server.requests if path == "/etag"]
    assert len(pages) == 2 and "if-none-match" not in pages[0]
    assert pages[1]["if-none-match"] == '"v1"'
    assert pages[1]["if-modified-since"] == "Wed, 01 Jan 2025 00:00:00 GMT"
    assert len(list(read_records(tmp_path / "records"))) == 1


def test_without_recrawl_ttl_no_validators_are_kept_or_sent(redis_url, redis_client, tmp_path, fault_server):
    """By default nothing is kept per URL: a forced re-fetch is a full GET and stores the page again."""
    fault_server.reset()
    p = _recrawl_pipeline(redis_url, tmp_path, recrawl_ttl=0)
    assert p.run_one(fault_server.url("/etag")).state == "stored"
    again = p.run_one(fault_server.url("/etag"), force=True)
    p.store.close()
    assert again.state == "stored"  # the same id again: sinks upsert it
    pages = [headers for path, headers in fault_server.requests if path == "/etag"]
    assert len(pages) == 2 and "if-none-match" not in pages[1] and "if-modified-since" not in pages[1]
