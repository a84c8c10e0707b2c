import base64
from datetime import UTC, datetime

import pytest

from worker.pipeline import neardup
from worker.pipeline.clean import Cleaner
from worker.pipeline.dedupe import content_hash
from worker.pipeline.enrich import (
    Enricher,
    iso_date,
    lead,
    reading_time_minutes,
    registered_domain,
    word_count,
)
from worker.pipeline.extract import Extractor
from worker.runner import EXTRACTOR, Job, build_record

FETCHED = "2026-03-10T12:00:00Z"
NOW = datetime(2026, 3, 10, 12, tzinfo=UTC)

RICH_PAGE = """<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Ferry plan approved | Harbour Herald</title>
<meta property="og:title" content="Ferry plan approved">
<meta name="author" content="Ana Moreau">
<meta name="description" content="The council approved the ferry plan after a long debate.">
<meta property="og:site_name" content="Harbour Herald">
<meta property="og:image" content="https://news.harbour.co.uk/img/ferry.jpg">
<meta property="article:published_time" content="2026-03-04T08:00:00Z">
<meta property="article:modified_time" content="2026-03-05T09:30:00+01:00">
<meta property="article:section" content="Local">
<meta property="article:tag" content="ferries">
<meta property="article:tag" content="council">
<link rel="canonical" href="https://news.harbour.co.uk/local/ferry-plan">
</head><body><nav><a href="/">Home</a></nav><article><h1>Ferry plan approved</h1>
<p>Harbour council approved the new ferry plan on Tuesday after a debate that lasted late into the night.</p>
<p>The plan adds two vessels and a night service, and residents of the island wards welcomed the change.</p>
<p>Officials said the first new vessel would sail in spring, with the night service following in summer.</p>
</article></body></html>"""


@pytest.fixture(scope="module")
def record():
    doc = Cleaner().clean(Extractor().extract(RICH_PAGE, "https://www.harbour.co.uk/p?id=1"))
    job = Job(url="https://www.harbour.co.uk/p?id=1", id="a" * 32, token="t", batch="b")
    return build_record(job, doc, final_url=job.url, status=200, fetched_at=FETCHED, enricher=Enricher())


def test_enrich_sets_language_word_count_and_domain():
    """English text gets language 'en', its word count, and the domain without www."""
    rec = Enricher().enrich(
        {
            "text": "The council met on Tuesday to approve the new harbour budget for next year.",
            "final_url": "https://www.example.co.uk/a",
        }
    )
    assert rec["language"] == "en" and rec["language_score"] > 0.9
    assert rec["word_count"] == 14
    assert rec["domain"] == "example.co.uk"


def test_language_of_german_text():
    """Language detection is not English-only."""
    text = "Der Gemeinderat hat am Dienstag den neuen Haushalt für den Hafen beschlossen."
    assert Enricher().language(text)[0] == "de"


def test_empty_text_has_no_language():
    """No text, no language guess and zero words."""
    rec = Enricher().enrich({"text": "", "url": "https://example.com/"})
    assert (rec["language"], rec["word_count"], rec["reading_time_minutes"], rec["lead"]) == (
        None,
        0,
        0,
        None,
    )


def test_title_from_page_metadata(record):
    """The title is the og:title, without the site suffix of <title>."""
    assert record["title"] == "Ferry plan approved"


def test_author_from_page_metadata(record):
    """The author comes from the author meta tag."""
    assert record["author"] == "Ana Moreau"


def test_published_keeps_the_pages_time(record):
    """published is the article:published_time with its time and offset (UTC written Z)."""
    assert record["published"] == "2026-03-04T08:00:00Z"


def test_modified_keeps_the_pages_offset(record):
    """modified is the article:modified_time as given, its +01:00 offset kept."""
    assert record["modified"] == "2026-03-05T09:30:00+01:00"


def test_sitename_description_image(record):
    """sitename, description and image come from og:site_name, description and og:image."""
    assert record["sitename"] == "Harbour Herald"
    assert record["description"] == "The council approved the ferry plan after a long debate."
    assert record["image"] == "https://news.harbour.co.uk/img/ferry.jpg"


def test_categories_and_tags(record):
    """article:section gives categories; each article:tag element gives one tag."""
    assert record["categories"] == ["Local"]
    assert record["tags"] == ["ferries", "council"]


def test_canonical_url_from_link_rel(record):
    """canonical_url is the page's link rel=canonical, not the fetched URL."""
    assert record["canonical_url"] == "https://news.harbour.co.uk/local/ferry-plan"


def test_canonical_url_falls_back_to_final_url():
    """Without a declared canonical, canonical_url is the final URL."""
    rec = Enricher().enrich({"text": "x", "final_url": "https://example.com/a", "canonical_url": "/a"})
    assert rec["canonical_url"] == "https://example.com/a"


def test_domain_and_registered_domain(record):
    """domain drops www.; registered_domain is the name under the public suffix (co.uk counts as one)."""
    assert (record["domain"], record["registered_domain"]) == ("harbour.co.uk", "harbour.co.uk")
    assert registered_domain("news.bbc.co.uk") == "bbc.co.uk"
    assert registered_domain("foo.github.io") == "github.io"


def test_registered_domain_of_an_ip_address_is_none():
    """An IP address or localhost has no registered domain."""
    assert registered_domain("127.0.0.1") is None and registered_domain("localhost") is None


def test_reading_time_rounds_at_238_words_a_minute():
    """476 words read in 2 minutes; any text takes at least one."""
    assert reading_time_minutes("word " * 476) == 2
    assert reading_time_minutes("one word") == 1


def test_word_count_counts_unspaced_scripts_by_character():
    """Japanese characters count one each; Latin words in between count as words."""
    assert word_count("東京都 news の計画") == 7


def test_lead_is_first_prose_paragraph():
    """The lead skips a short dateline and takes the first paragraph of at least eight words."""
    text = "LONDON\nThe council approved the new ferry plan on Tuesday night.\nSecond paragraph here."
    assert lead(text) == "The council approved the new ferry plan on Tuesday night."


def test_record_lead(record):
    """The pipeline's record has the article's first paragraph as lead."""
    assert record["lead"].startswith("Harbour council approved the new ferry plan")


def test_content_hash_and_near_dup_signature(record):
    """content_hash is the SHA-256 of normalized text; near_dup_signature is base64 of its MinHash."""
    assert record["content_hash"] == content_hash(record["text"])
    sig = base64.b64decode(record["near_dup_signature"])
    assert sig == neardup.minhash(record["text"]) and len(sig) == neardup.HEADER + neardup.NUM_PERM


def test_extractor_names_trafilatura_and_version(record):
    """extractor says which library and version made the text."""
    import trafilatura

    assert record["extractor"] == EXTRACTOR == {"name": "trafilatura", "version": trafilatura.__version__}


def test_future_dates_are_dropped():
    """A date after the fetch (beyond a day of time-zone slack) is not kept."""
    assert iso_date("2026-03-12", not_after=NOW) is None
    assert iso_date("2026-03-11", not_after=NOW) == "2026-03-11"
    assert iso_date("2026-03-10T13:00:00Z", not_after=NOW) is None


def test_dates_in_other_formats_become_iso():
    """RFC 2822, offset times, compact and written-out dates become ISO 8601 as precise as given."""
    assert iso_date("Tue, 03 Mar 2026 10:00:00 GMT", not_after=NOW) == "2026-03-03T10:00:00Z"
    assert iso_date("2026-03-03T10:00:00-05:00", not_after=NOW) == "2026-03-03T10:00:00-05:00"
    assert iso_date("2026-03-03T10:00:00", not_after=NOW) == "2026-03-03T10:00:00"  # no offset given
    assert iso_date("20260303", not_after=NOW) == "2026-03-03"
    assert iso_date("March 3, 2026", not_after=NOW) == "2026-03-03"
    assert iso_date("last week", not_after=NOW) is None


def test_an_offset_time_after_the_fetch_is_dropped_even_if_its_local_clock_reads_earlier():
    """11:30-05:00 is 16:30 UTC, after a 12:00 UTC fetch: dropped, though 11:30 reads earlier."""
    assert iso_date("2026-03-10T11:30:00-05:00", not_after=NOW) is None


def test_modified_from_json_ld():
    """A dateModified in a JSON-LD block of <head> gives modified."""
    page = RICH_PAGE.replace(
        '<meta property="article:modified_time" content="2026-03-05T09:30:00+01:00">',
        '<script type="application/ld+json">{"@type": "NewsArticle", "dateModified": "2026-03-06T10:00:00Z"}'
        "</script>",
    )
    assert Extractor().extract(page, "https://example.com/a").modified == "2026-03-06T10:00:00Z"
