"""Tests for the extract stage: trafilatura settings, metadata, size cap and structural hints."""

from pathlib import Path

import pytest
import trafilatura

from worker.pipeline.extract import HINTS_KEY, Extracted, Extractor, line_key, page_hints

PAGES = Path(__file__).parent / "pages"


def page(name: str) -> str:
    return (PAGES / name).read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def article() -> Extracted:
    doc = Extractor().extract(page("furniture_article.html"), url="https://courier.example/news/sea-wall")
    assert doc is not None
    return doc


def test_extracts_main_text_one_paragraph_per_line(article):
    """The article's paragraphs come out as separate lines of ``text``."""
    lines = article.text.split("\n")
    assert any(line.startswith("Councillors in the harbour town of Westport voted") for line in lines)
    assert any(line.startswith("Work is expected to start in the spring") for line in lines)


def test_extracts_metadata(article):
    """Title, author, ISO date, site name, image and description come from the page's metadata."""
    assert article.title == "Harbour town votes to rebuild its flooded sea wall"
    assert article.author == "Maria Jensen"
    assert article.published == "2021-07-07T09:30:00Z"  # the time and offset as the page gives them
    assert article.sitename == "Coastline Courier"
    assert article.image == "https://courier.example/img/wall.jpg"
    assert article.description.startswith("Councillors backed a twelve million pound plan")


def test_keywords_are_split_into_tags(article):
    """A comma-separated keywords meta tag becomes one tag per keyword."""
    assert article.tags == ["flooding", "councils", "coast"]


def test_comments_section_not_extracted(article):
    """Reader comments are not article text."""
    assert "My cellar has been under water" not in article.text


def test_blank_input_returns_none():
    """An empty or whitespace-only document has nothing extractable."""
    assert Extractor().extract("") is None
    assert Extractor().extract("   \n ") is None


def test_page_without_article_gives_none_or_only_furniture():
    """A page with only navigation yields None or text made solely of its link labels."""
    doc = Extractor().extract(page("empty.html"))
    assert doc is None or set(doc.text.split()) <= {"Home", "About"}


def test_oversized_html_is_truncated_to_max_bytes():
    """Bytes beyond ``max_bytes`` are never parsed."""
    para = "<p>" + "The early part of the page is a long paragraph of ordinary article prose. " * 5 + "</p>"
    tail = "<p>" + "LATEPARAGRAPH words that only appear after the size cap in this document. " * 5 + "</p>"
    filler = "<div>" + "x" * 20_000 + "</div>"
    html = "<html><body><article>" + para * 4 + filler + tail + "</article></body></html>"
    capped = Extractor(max_bytes=len(html) - 2_000).extract(html)
    assert capped is not None
    assert "LATEPARAGRAPH" not in capped.text
    assert "LATEPARAGRAPH" in Extractor().extract(html).text


def test_bytes_input_is_accepted():
    """Raw bytes are decoded by trafilatura's charset detection."""
    doc = Extractor().extract(page("furniture_article.html").encode("utf-8"))
    assert doc is not None and "Westport" in doc.text


def test_invalid_max_bytes_rejected():
    """A size cap below one byte is a configuration error."""
    with pytest.raises(ValueError):
        Extractor(max_bytes=0)


def test_process_global_dedup_option_rejected():
    """trafilatura's deduplicate option keeps state across documents, so it is refused."""
    with pytest.raises(ValueError):
        Extractor(deduplicate=True)


def test_hints_carry_captions_links_and_furniture(article):
    """The hints list figcaptions, link texts, furniture boxes (a list each) and headings as line keys."""
    hints = article.extra[HINTS_KEY]
    caption = "The collapsed section of the sea wall at low tide, seen from the old pier (Photo: "
    caption += "Courier staff)"
    assert line_key(caption) in hints["captions"]
    assert line_key("Fishermen fear for their livelihoods as harbour stays closed") in hints["links"]
    signup = line_key("Sign up for our free daily newsletter and get the latest news in your inbox.")
    assert any(signup in box for box in hints["furniture"])
    assert isinstance(hints["headings"], list)


def test_page_hints_find_caption_classes():
    """Elements whose class names a caption count as captions, not only <figcaption>."""
    tree = trafilatura.load_html(page("seed_style.html"))
    hints = page_hints(tree)
    caption = "Smoke rises over the old town on Wednesday morning as fighting reaches the centre"
    assert line_key(caption) in hints["captions"]


def test_hints_can_be_switched_off():
    """``hints=False`` leaves ``extra`` empty."""
    doc = Extractor(hints=False).extract(page("furniture_article.html"))
    assert doc is not None and doc.extra == {}
