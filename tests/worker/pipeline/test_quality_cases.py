"""Failure classes of issue 11 as small hand-written pages: what extract + clean keep, and what they drop."""

import unicodedata

import pytest

from worker.pipeline.clean import Cleaner
from worker.pipeline.extract import Extractor, is_furniture_class
from worker.pipeline.metadata import clean_title, person_names

PROSE = [
    "The harbour council approved the new ferry plan on Tuesday after a debate that lasted into the night.",
    "The plan adds two vessels and a night service, and residents of the island wards welcomed the change.",
    "Officials said the first new vessel would sail in spring, with the night service following in summer.",
    "Fishermen asked for a separate berth so that the larger ferries would not block the harbour mouth.",
]


def html(body: str, head: str = "<title>Ferry plan approved</title>") -> str:
    return f"<!doctype html><html><head><meta charset='utf-8'>{head}</head><body>{body}</body></html>"


def run(page: str, url: str = "https://news.example.com/a") -> str:
    doc = Extractor().extract(page, url)
    assert doc is not None, "no text extracted"
    return Cleaner().clean(doc).text


def paragraphs(items=PROSE) -> str:
    return "".join(f"<p>{p}</p>" for p in items)


def test_drupal_node_promoted_article_is_kept():
    """An article classed ``node--promoted`` is the article, not a promo box: its text survives."""
    page = html(
        '<div class="layout"><article class="node node--type-article node--promoted node--view-mode-full">'
        f"<h1>Ferry plan approved</h1>{paragraphs()}</article>"
        '<aside class="promo-box"><p>Subscribe to our weekly digest</p></aside></div>'
    )
    text = run(page)
    for p in PROSE:
        assert p in text
    assert "Subscribe to our weekly digest" not in text


def test_class_words_match_whole_words_only():
    """'promo' does not match 'promoted', 'ad' does not match a hex id; real furniture classes still match."""
    assert not is_furniture_class("node node--promoted")
    assert not is_furniture_class("a3ad9f c-7ad")
    assert not is_furniture_class("headline loaded")
    assert is_furniture_class("promo-box")
    assert is_furniture_class("ad-slot")
    assert is_furniture_class("shareButtons")
    assert is_furniture_class("related-posts")


def test_a_furniture_classed_box_holding_most_of_the_text_is_kept():
    """A review section classed like an ad box but holding the article's text (pros, cons, verdict) stays."""
    verdict = [
        "Pros: the battery lasts two full days, the screen is bright outdoors and the case survives drops.",
        "Cons: the camera struggles in low light and the charger is not included in the box any more.",
        "Verdict: a sturdy phone for people who want a week away from the charger, not the best photos.",
    ]
    page = html(
        f'<article><h1>Phone review</h1><div class="TestReport__Section--Ads">{paragraphs(verdict)}</div>'
        "<p>Tested over three weeks.</p></article>",
        "<title>Phone review</title>",
    )
    text = run(page)
    for p in verdict:
        assert p in text


def test_facts_table_inside_an_article_is_kept():
    """A table of facts inside the article body keeps its cells."""
    page = html(
        f"<article><h1>Ferry plan approved</h1>{paragraphs(PROSE[:2])}"
        "<table><tr><th>Vessel</th><th>Capacity</th></tr><tr><td>Island Star</td><td>420 passengers</td></tr>"
        f"<tr><td>Night Owl</td><td>260 passengers</td></tr></table>{paragraphs(PROSE[2:])}</article>"
    )
    text = run(page)
    assert "Island Star" in text and "420 passengers" in text and "Night Owl" in text


def test_a_paragraph_made_of_one_link_is_content_but_a_link_list_is_not():
    """A linked sentence inside the article is kept; a list of short section links at its edge is dropped."""
    linked = "The full council report on the ferry plan, with its costs and timetable, is published online."
    nav = "".join(f'<li><a href="/s/{i}">Section {i}</a></li>' for i in ("news", "sport", "travel"))
    page = html(
        f"<article><ul>{nav}</ul><h1>Ferry plan approved</h1>{paragraphs(PROSE[:2])}"
        f'<p><a href="/report.pdf">{linked}</a></p>{paragraphs(PROSE[2:])}</article>'
    )
    text = run(page)
    assert linked in text
    assert "Section sport" not in text


def test_accordion_article_keeps_every_panel():
    """An article written as collapsible panels (details/summary) keeps each panel's text."""
    panels = "".join(
        f"<details><summary>Question {i}</summary><p>{p}</p></details>" for i, p in enumerate(PROSE)
    )
    page = html(f"<main><h1>Ferry plan: questions and answers</h1>{panels}</main>")
    text = run(page)
    for p in PROSE:
        assert p in text


def test_page_builder_wrappers_do_not_hide_the_text():
    """Text nested in page-builder wrappers (many anonymous divs, no article element) is found."""
    inner = "".join(
        f'<div class="tcb-col"><div class="thrv_wrapper thrv_text_element"><div class="tcb-text">'
        f"<p>{p}</p></div></div></div>"
        for p in PROSE
    )
    page = html(
        '<div id="tve_editor"><div class="ct-section"><div class="ct-section-inner-wrap">'
        f'<div class="thrv-page-section"><div class="tve-page-section-in">{inner}</div></div>'
        "</div></div></div>"
        '<footer><a href="/imprint">Imprint</a></footer>'
    )
    text = run(page)
    for p in PROSE:
        assert p in text
    assert "Imprint" not in text


def test_decomposed_unicode_is_nfc_normalised():
    """Text written with combining marks (u + U+0308) comes out composed: 'geprüft' matches 'geprüft'."""
    decomposed = unicodedata.normalize(
        "NFD", "Die Brücke wurde im März geprüft und für sicher befunden, sagte die Stadt."
    )
    page = html(
        f"<article><h1>Brücke</h1><p>{decomposed}</p>{paragraphs()}</article>", "<title>Brücke</title>"
    )
    text = run(page)
    assert "geprüft" in text and unicodedata.is_normalized("NFC", text)


@pytest.mark.parametrize(
    ("furniture", "prose"),
    [
        (
            [
                "Weiter",
                "Kategorien",
                "Teilen",
                "Lesen Sie auch",
                "Vervielfältigung nur mit Genehmigung des Verlags",
            ],
            [
                "Der Stadtrat hat am Dienstag nach langer Debatte den neuen Plan für die Fähren beschlossen.",
                "Der Plan sieht zwei neue Schiffe und einen Nachtdienst vor, den Inselbewohner begrüßten.",
                "Das erste neue Schiff soll im Frühjahr fahren, der Nachtdienst folgt im kommenden Sommer.",
            ],
        ),
        (
            ["Compartir", "Leer más", "Artículos relacionados", "Todos los derechos reservados"],
            [
                "El ayuntamiento aprobó el martes el nuevo plan de transbordadores tras un largo debate.",
                "El plan añade dos barcos y un servicio nocturno, y los vecinos celebraron el cambio.",
                "El primer barco nuevo zarpará en primavera y el servicio nocturno llegará en verano.",
            ],
        ),
    ],
)
def test_german_and_spanish_furniture_lines_are_dropped(furniture, prose):
    """Short German and Spanish labels (read more, share, categories, copyright) go; the prose stays."""
    body = "".join(f"<p>{p}</p>" for p in prose[:2]) + "".join(f"<p>{f}</p>" for f in furniture)
    page = html(f"<article><h1>Fähren</h1>{body}<p>{prose[2]}</p></article>", "<title>Fähren</title>")
    lines = run(page).split("\n")
    for p in prose:
        assert p in lines
    for f in furniture:
        assert f not in lines


@pytest.mark.parametrize(
    ("byline", "names"),
    [
        ("By Tom Krisher, AP Auto Writer", ["Tom Krisher"]),
        ("Laura June Topolsky July 22, 2015", ["Laura June Topolsky"]),
        ("Par Sébastien Farcis — 12 mars 2019 à 15:20", ["Sébastien Farcis"]),
        ("Von Anna Schmidt und Jonas Weber", ["Anna Schmidt", "Jonas Weber"]),
        ("JOE HILDEBRAND, Games Editor", ["Joe Hildebrand"]),
        ("Brenda Goodman, MA", ["Brenda Goodman"]),
        ("Jong, Michiel de", ["Michiel de Jong"]),
        ("Written by Rob Ewaschuk. Edited by Betsy Beyer", ["Rob Ewaschuk"]),
        ("Username", []),
        ("Reuters", []),
        ("Last Updated: January 7, 2025", []),
    ],
)
def test_bylines_become_person_names(byline, names):
    """Lead words, dates, job titles, degrees, agencies and junk words are not names."""
    assert person_names(byline) == names


def test_site_name_in_exclusions_is_not_an_author():
    """A byline naming the publication itself gives no author."""
    assert person_names("Harbour Herald", {"harbour herald"}) == []


def test_authors_list_and_joined_author_from_a_page():
    """Two JSON-LD Person authors give ``authors`` of both and ``author`` joined by '; '."""
    head = (
        "<title>Ferry plan approved | Harbour Herald</title>"
        '<script type="application/ld+json">{"@type": "NewsArticle", "headline": "Ferry plan approved",'
        ' "author": [{"@type": "Person", "name": "Ana Moreau"}, {"@type": "Person", "name": "Li Wei"},'
        ' {"@type": "Organization", "name": "Harbour Herald"}]}</script>'
    )
    doc = Extractor().extract(html(f"<article>{paragraphs()}</article>", head), "https://harbour.example/a")
    assert doc.authors == ["Ana Moreau", "Li Wei"]
    assert doc.author == "Ana Moreau; Li Wei"


@pytest.mark.parametrize(
    ("title", "site", "headline"),
    [
        ("Ferry plan approved | Harbour Herald", "Harbour Herald", "Ferry plan approved"),
        ("Harbour Herald - Ferry plan approved", "Harbour Herald", "Ferry plan approved"),
        ("Ferry plan approved _Local_Harbour Herald", "Harbour Herald", "Ferry plan approved"),
        ("渡轮新计划获批准_本地新闻_港口日报", None, "渡轮新计划获批准"),
        ("Ferry plan approved by the council – My website", None, "Ferry plan approved by the council"),
        ("Daring Fireball: Colophon", None, "Daring Fireball: Colophon"),
    ],
)
def test_title_without_the_site_name(title, site, headline):
    """The site's name is cut from either end of the title; a title left too short stays whole."""
    assert clean_title(None, [], title, None, [site] if site else []) == headline


def test_tags_are_not_split_inside_one_article_tag():
    """Each article:tag element is one tag, even with a comma inside ("Bevin, Matthew")."""
    head = (
        '<title>Ferry plan approved</title><meta property="article:tag" content="Bevin, Matthew">'
        '<meta property="article:tag" content="Kentucky">'
    )
    doc = Extractor().extract(html(f"<article>{paragraphs()}</article>", head))
    assert doc.tags == ["Bevin, Matthew", "Kentucky"]


def test_a_paragraph_broken_over_source_lines_is_one_line():
    """A block whose source text is hard-wrapped comes out as one line; separate blocks stay separate."""
    wrapped = PROSE[0].replace(" on Tuesday ", "\n        on Tuesday ").replace(" lasted ", "\n  lasted ")
    page = html(f"<article><div>{wrapped}</div><div>{PROSE[1]}</div><div>{PROSE[2]}</div></article>")
    lines = run(page).split("\n")
    assert lines[:3] == PROSE[:3]


def test_when_trafilatura_finds_nothing_readability_lxml_gives_the_text(monkeypatch):
    """A page trafilatura returns nothing for still gets its text, from readability-lxml, and says so."""
    import worker.pipeline.extract as extract

    monkeypatch.setattr(extract.trafilatura, "bare_extraction", lambda *a, **k: None)
    doc = Extractor().extract(html(f"<article><h1>Ferry plan approved</h1>{paragraphs()}</article>"))
    assert doc is not None
    for p in PROSE:
        assert p in doc.text
    assert doc.extra[extract.EXTRACTOR_KEY]["name"] == "readability-lxml"
    assert Extractor(fallback_below_chars=0).extract(html(f"<article>{paragraphs()}</article>")) is None


def test_a_longer_fallback_text_is_taken_only_when_it_holds_trafilaturas(monkeypatch):
    """Past the short-text case, readability's text must contain trafilatura's: another region is refused."""
    import worker.pipeline.extract as extract

    long_page = html(f"<article>{paragraphs() * 6}</article>")  # 2,400 characters of paragraphs
    other = "\n".join(
        f"Unrelated sidebar sentence number {i} about something else entirely." for i in range(80)
    )
    monkeypatch.setattr(extract, "paragraph_chars", lambda tree: 100_000)  # trafilatura kept under half
    monkeypatch.setattr(extract, "readability_text", lambda tree: (other, []))
    assert "Unrelated sidebar" not in Extractor().extract(long_page).text
    superset = "\n".join(PROSE * 6 + PROSE * 6)
    monkeypatch.setattr(extract, "readability_text", lambda tree: (superset, []))
    assert Extractor().extract(long_page).text == superset


def test_paragraph_chars_leave_out_navigation_and_footers():
    """Only paragraphs outside nav, aside, header and footer count as the page's paragraph text."""
    import trafilatura

    from worker.pipeline.extract import paragraph_chars

    tree = trafilatura.load_html(html("<nav><p>Menu text</p></nav><article><p>Ten chars.</p></article>"
                                      "<footer><p>Footer words</p></footer>"))  # fmt: skip
    assert paragraph_chars(tree) == len("Ten chars.")
