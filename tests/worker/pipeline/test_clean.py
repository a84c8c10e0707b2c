"""Tests for the clean stage: repeated paragraphs and page furniture go, article paragraphs stay."""

import dataclasses
from pathlib import Path

import pytest

from worker.pipeline.clean import Cleaner, is_furniture_wording
from worker.pipeline.extract import HINTS_KEY, Extracted, Extractor

PAGES = Path(__file__).parent / "pages"

SEED_PARAGRAPHS = [
    "Rebel fighters on Wednesday launched their first assault on a provincial capital",
    "Fierce fighting erupted in the western city after the militants took the last of the districts",
    "'The enemy has entered the city and all the districts have fallen",
    "Footage posted online appeared to show fighters entering the city on motorbikes",
    "Provincial council members said the rebels were inside the police headquarters",
    "An official delegation met rebel representatives in a neighbouring capital on Wednesday",
]
ARTICLE_PARAGRAPHS = [
    "Councillors in the harbour town of Westport voted on Wednesday evening",
    "The plan, which will cost about twelve million pounds, was approved",
    "Residents whose homes were flooded twice this year told the meeting",
    "Engineers hired by the council said the new wall would be two metres higher",
    "Work is expected to start in the spring and to take about eighteen months",
    "The council leader said she was confident that most of the money would come",
]


def extract_and_clean(name: str) -> Extracted:
    html = (PAGES / name).read_text(encoding="utf-8")
    doc = Extractor().extract(html, url=f"https://news.example/{name}")
    assert doc is not None
    return Cleaner().clean(doc)


@pytest.fixture(scope="module")
def seed() -> list[str]:
    return extract_and_clean("seed_style.html").text.split("\n")


@pytest.fixture(scope="module")
def article() -> Extracted:
    return extract_and_clean("furniture_article.html")


def lines_containing(lines: list[str], needle: str) -> list[str]:
    return [line for line in lines if needle.lower() in line.lower()]


def doc(*lines: str, **fields) -> Extracted:
    return Extracted(text="\n".join(lines), **fields)


def test_seed_page_keeps_every_article_paragraph(seed):
    """Cleaning the seed-style page keeps all six real paragraphs, in order."""
    found = [next(i for i, line in enumerate(seed) if line.startswith(p)) for p in SEED_PARAGRAPHS]
    assert found == sorted(found)


def test_seed_page_is_only_article_paragraphs(seed):
    """Nothing but the six article paragraphs survives on the seed-style page."""
    assert len(seed) == len(SEED_PARAGRAPHS)


def test_caption_repeated_in_text_removed(seed):
    """A caption printed in a caption element and again as text lines is gone entirely."""
    assert lines_containing(seed, "Smoke rises over the old town") == []


def test_figcaption_repeated_as_paragraph_removed(article):
    """Text equal to a <figcaption> is removed even when the page repeats it as a paragraph."""
    assert "The collapsed section of the sea wall" not in article.text


def test_ad_label_removed(seed):
    """A lone "Advertisement" label is removed."""
    assert lines_containing(seed, "Advertisement") == []


def test_newsletter_prompt_removed(seed, article):
    """Newsletter sign-up prompts are removed."""
    assert lines_containing(seed, "newsletter") == []
    assert "newsletter" not in article.text.lower()


def test_share_prompt_removed(seed):
    """ "Share this article" is removed."""
    assert lines_containing(seed, "Share this") == []


def test_comment_widgets_removed(seed):
    """Comment counters and sort controls are removed."""
    assert lines_containing(seed, "Comments 312") == []
    assert lines_containing(seed, "Sort by newest") == []


def test_prev_next_navigation_removed(seed):
    """PREV / NEXT story links are removed."""
    assert [line for line in seed if line.startswith(("PREV", "NEXT"))] == []


def test_related_link_list_removed(seed):
    """A run of list items that are each one link's text is removed."""
    assert lines_containing(seed, "Police chief resigns") == []
    assert lines_containing(seed, "Storm warning issued") == []


def test_read_more_line_removed(seed, article):
    """ "read more from ..." and "Read more: <headline>" lines are removed."""
    assert lines_containing(seed, "read more") == []
    assert "Read more" not in article.text


def test_cookie_notice_removed(seed):
    """A cookie notice inside the article container is removed."""
    assert lines_containing(seed, "cookie") == []


def test_copyright_line_removed(seed):
    """A copyright / all-rights-reserved line is removed."""
    assert lines_containing(seed, "All rights reserved") == []


def test_photo_credit_removed(seed):
    """A "Photo: Getty Images" credit line is removed."""
    assert lines_containing(seed, "Getty") == []


def test_title_not_repeated_as_first_line(seed, article):
    """The title, already in the record, does not open the text."""
    assert not seed[0].startswith("Rebels launch first assault")
    assert article.text.split("\n")[0] != article.title


def test_dek_repeating_description_removed(article):
    """A heading that repeats the meta description (the standfirst) is not body text."""
    assert "Councillors backed a twelve million pound plan" not in article.text


def test_furniture_article_keeps_every_paragraph_once(article):
    """Each real paragraph of the furniture page is there exactly once."""
    lines = article.text.split("\n")
    assert [len(lines_containing(lines, p)) for p in ARTICLE_PARAGRAPHS] == [1] * len(ARTICLE_PARAGRAPHS)
    assert len(lines) == len(ARTICLE_PARAGRAPHS)


def test_exact_repeat_removed():
    """A paragraph appearing twice is kept once, at its first position."""
    out = Cleaner().clean(doc("First paragraph here.", "Second paragraph here.", "First paragraph here."))
    assert out.text == "First paragraph here.\nSecond paragraph here."


def test_repeat_after_normalisation_removed():
    """Repeats differing only in whitespace, case or punctuation count as repeats."""
    out = Cleaner().clean(doc("The mayor said: “We will rebuild.”", "the MAYOR said   we will rebuild"))
    assert out.text == "The mayor said: “We will rebuild.”"


def test_repeats_under_different_headings_kept():
    """The same line under two different headings is template structure and stays."""
    text = doc(
        "Plan A",
        "Breakfast: two eggs and toast",
        "Plan B",
        "Breakfast: two eggs and toast",
        extra={HINTS_KEY: {"headings": ["plan a", "plan b"]}},
    )
    assert Cleaner().clean(text).text.count("Breakfast: two eggs and toast") == 2


def test_document_scope_dedupes_across_headings():
    """``dedupe_scope="document"`` removes repeats even across headings."""
    text = doc(
        "Plan A",
        "Breakfast: two eggs and toast",
        "Plan B",
        "Breakfast: two eggs and toast",
        extra={HINTS_KEY: {"headings": ["plan a", "plan b"]}},
    )
    assert Cleaner(dedupe_scope="document").clean(text).text.count("Breakfast: two eggs and toast") == 1


def test_unknown_dedupe_scope_rejected():
    """An unknown dedupe scope is a configuration error."""
    with pytest.raises(ValueError):
        Cleaner(dedupe_scope="site")


def test_same_output_after_processing_other_documents():
    """Cleaning is per document: earlier documents never change a later result."""
    html = (PAGES / "seed_style.html").read_text(encoding="utf-8")
    other = (PAGES / "furniture_article.html").read_text(encoding="utf-8")
    extractor, cleaner = Extractor(), Cleaner()
    first = cleaner.clean(extractor.extract(html))
    for _ in range(3):
        cleaner.clean(extractor.extract(other))
        cleaner.clean(extractor.extract(html))
    assert cleaner.clean(extractor.extract(html)) == first
    assert Cleaner().clean(Extractor().extract(html)) == first


def test_clean_returns_copy_and_leaves_input_unchanged():
    """The input record is not modified."""
    original = doc(
        "Same line twice here.",
        "Same line twice here.",
        title="T",
        tags=["a"],
        extra={HINTS_KEY: {"links": []}, "keep": 1},
    )
    snapshot = dataclasses.replace(original, tags=list(original.tags), extra=dict(original.extra))
    cleaned = Cleaner().clean(original)
    assert original == snapshot
    assert cleaned is not original


def test_hints_dropped_from_cleaned_record():
    """The HTML hints are consumed by the cleaner; other ``extra`` keys pass through."""
    cleaned = Cleaner().clean(doc("Some text line.", extra={HINTS_KEY: {"links": []}, "keep": 1}))
    assert cleaned.extra == {"keep": 1}


def test_lone_link_between_paragraphs_kept():
    """A single linked line between paragraphs is the author's, not navigation."""
    prose = "This is a sentence of ordinary article prose that is long enough to count as a paragraph."
    out = Cleaner().clean(
        doc(
            prose,
            "Full state swim results",
            prose.replace("This", "That"),
            extra={HINTS_KEY: {"links": ["full state swim results"]}},
        )
    )
    assert "Full state swim results" in out.text.split("\n")


def test_prose_mentioning_furniture_words_kept():
    """Sentences that merely mention subscribing, sharing or what comes next are prose."""
    lines = [
        "Next, the committee will hear from the harbour master and the coastguard about the repairs.",
        "The paper said more than two million readers subscribe to its weekly newsletter about farming.",
        "She did not share the details of the agreement with the residents who attended the meeting.",
    ]
    assert Cleaner().clean(doc(*lines)).text.split("\n") == lines


@pytest.mark.parametrize(
    "line",
    [
        "Advertisement",
        "Story continues below advertisement",
        "Share this article",
        "Comments 312",
        "Sort by newest",
        "Read more: Council tax to rise again",
        "Related stories",
        "PREV",
        "Next article »",
        "Follow us on Twitter",
        "Copyright 2021 Example Media. All rights reserved.",
        "Photo: Getty Images",
        "Sign up for our daily newsletter and get the latest news in your inbox",
        "We use cookies to give you the best experience. By continuing you accept our cookie policy.",
    ],
)
def test_furniture_wording_detected(line):
    """Common furniture labels and prompts are recognised by wording."""
    assert is_furniture_wording(line)
