"""Extract stage: one HTML page -> main text (one paragraph per line) + metadata, with trafilatura.

The page is parsed once; trafilatura works on a copy of that tree while we read structural hints
from it (captions, link texts, furniture blocks) that the clean stage needs but that trafilatura's
plain-text output no longer shows. The hints travel in ``Extracted.extra["hints"]`` as JSON-safe
lists of normalised keys (see ``line_key``); the cleaner consumes and removes them.
"""

from __future__ import annotations

import copy
import re
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from importlib.metadata import version as _version

import lxml.html
import trafilatura
from lxml import etree
from trafilatura.xml import xmltotxt

from worker.pipeline.decode import check_text
from worker.pipeline.metadata import read_metadata

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
"""Pages larger than this are cut to this many bytes before parsing: bounds memory and CPU per task."""

HINTS_KEY = "hints"
"""Key in ``Extracted.extra`` under which the structural hints for the cleaner are passed."""

TRAFILATURA_OPTIONS = {
    "fast": True,
    "include_comments": False,
    "include_tables": True,
    "include_images": False,
    "include_links": False,
    "favor_precision": False,
    "favor_recall": True,
}
"""Chosen by measurement on both public suites (benchmarks/extraction_quality.py): ``fast`` skips
trafilatura's own readability/jusText comparison (our fallback below is cheaper and better: it runs only
where trafilatura found little); ``favor_recall`` keeps what the clean stage can judge, scores the same
and costs ~10 % less CPU than the balanced mode; comments are not article text."""

FALLBACK_BELOW_CHARS = 800
"""When trafilatura's text is shorter than this, readability-lxml is tried too (with ``FALLBACK_SHARE``:
on 8 % of the ScrapingHub pages and 19 % of the Readability pages)."""

FALLBACK_GAIN = 1.3
"""Below ``FALLBACK_BELOW_CHARS``, readability-lxml's text replaces trafilatura's when at least this many
times as long."""

FALLBACK_SHARE = 0.5
"""readability-lxml is also tried when trafilatura's text is under this share of the page's paragraph
text (``<p>`` outside nav, aside, header and footer)."""

FALLBACK_MORE = 1.6
"""... and its text is taken there when this many times as long as trafilatura's ..."""

FALLBACK_CONTAINMENT = 0.8
"""... and it holds at least this share of trafilatura's words (``containment``)."""

MAX_HINT_CHARS = 600
"""Caption or furniture blocks longer than this are ignored: a container that big is not a caption."""

_FURNITURE_WORDS = frozenset(
    (
        "share shares sharing sharebar sharetools social socials newsletter newsletters subscribe "
        "subscription subscriptions signup related recommend recommended recommendation recommendations "
        "promo promos advert adverts advertisement advertisements advertising ad ads sponsor sponsors "
        "sponsored cookie cookies consent gdpr breadcrumb breadcrumbs comment comments disqus outbrain "
        "taboola trending popular readmore paywall pagination pager tags prev next follow toolbar byline"
    ).split()
)
"""Words of a class name that mark a furniture box, matched against whole words of the class: "promo"
matches "promo-box" but not "node--promoted", "ad" matches "ad-slot" but not a hex id such as "a3ad9f"."""

_CLASS_SPLIT = re.compile(r"[\s\-_]+")
_CLASS_WORD = re.compile(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])")
MAX_FURNITURE_BOX_CHARS = 1500
"""A share/related/newsletter box is small; a classed container bigger than this holds content too
(page wrappers carry classes such as "has-cookie-banner" or "paywall")."""

_CAPTION_CLASS = re.compile(r"caption|credit")
_NAV_ROLES = frozenset({"navigation", "menu", "menubar"})
_BOX_ROLES = frozenset({"complementary", "contentinfo", "banner", "dialog", "alertdialog"})
_BOX_TAGS = frozenset({"nav", "aside", "footer"})
_LINE_BLOCKS = ("p", "li", "h1", "h2", "h3", "h4", "h5", "h6", "dd", "dt", "figcaption", "td", "a")


def line_key(text: str) -> str:
    """Whitespace-collapsed, case-folded form of a line; what hints and cleaner lines are compared on."""
    return " ".join(text.split()).casefold()


@dataclass(slots=True)
class Extracted:
    """Main text of one page (one paragraph per line) plus the metadata found with it."""

    text: str
    title: str | None = None
    author: str | None = None
    published: str | None = None
    description: str | None = None
    sitename: str | None = None
    image: str | None = None
    tags: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)
    modified: str | None = None
    canonical_url: str | None = None
    categories: list[str] = field(default_factory=list)
    authors: list[str] = field(default_factory=list)


class Extractor:
    """Turns one HTML page into an ``Extracted`` record, or None when nothing is extractable.

    ``options`` are passed to ``trafilatura.bare_extraction`` over our defaults (``TRAFILATURA_OPTIONS``);
    ``hints=False`` skips collecting the structural hints the cleaner uses; below
    ``fallback_below_chars`` characters of trafilatura text readability-lxml is tried as well (0: never).
    """

    def __init__(
        self,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        hints: bool = True,
        fallback_below_chars: int = FALLBACK_BELOW_CHARS,
        **options,
    ) -> None:
        if max_bytes < 1:
            raise ValueError("max_bytes must be >= 1")
        if fallback_below_chars < 0:
            raise ValueError("fallback_below_chars must be >= 0 (0: trafilatura only)")
        self.fallback_below_chars = fallback_below_chars
        if "deduplicate" in options:
            # trafilatura's dedup cache is process-global: results would depend on earlier documents
            raise ValueError("deduplicate is not supported: the clean stage dedupes per document")
        self.max_bytes = max_bytes
        self.hints = hints
        self.options = {**TRAFILATURA_OPTIONS, **options}

    def extract(self, html: str | bytes, url: str | None = None) -> Extracted | None:
        """Extract main text and metadata from ``html``; None when the page has no main text.

        Raises ``Skip("not_html")`` / ``Skip("decode_error")`` for text that is mostly unprintable or
        replacement characters (``decode.check_text``): random bytes must not become a record.
        """
        html = _cap_size(html, self.max_bytes)
        if not html or not html.strip():
            return None
        if isinstance(html, str):
            check_text(html)
        try:
            tree = trafilatura.load_html(html)
        except (TypeError, ValueError):
            return None
        if tree is None:
            return None
        # bare_extraction works on its own copy when given a tree, so ours stays intact for the hints;
        # metadata is ours (worker.pipeline.metadata): trafilatura's costs more than its extraction
        doc = trafilatura.bare_extraction(tree, url=url, with_metadata=False, **self.options)
        text = (doc.text or "").strip() if doc is not None else ""
        headings = [line_key("".join(h.itertext())) for h in doc.body.iter("head")] if text else []
        joins = source_line_joins(doc.text, doc.body) if text else []
        meta = read_metadata(tree, url)
        extra: dict = {}
        if self.hints:
            extra[HINTS_KEY] = page_hints(tree)
        short = len(text) < self.fallback_below_chars
        if self.fallback_below_chars and (short or len(text) < FALLBACK_SHARE * paragraph_chars(tree)):
            # where trafilatura found little, or less than half of the page's paragraphs, a second
            # extractor may find what it missed (page builders, accordions, math, split articles):
            # readability-lxml, kept when it finds clearly more, and for a longer text only when that
            # text holds trafilatura's (the same article, more of it; not another part of the page)
            other, other_headings = readability_text(tree)  # last: readability may change the tree
            if (short and len(other) > FALLBACK_GAIN * len(text)) or (
                len(other) > FALLBACK_MORE * len(text) and containment(text, other) >= FALLBACK_CONTAINMENT
            ):
                text, headings, joins = other, other_headings, []
                extra[EXTRACTOR_KEY] = READABILITY
        if joins:
            extra[JOINS_KEY] = joins
        if not text:
            return None
        if self.hints:
            # section headings as the extractor kept them: the cleaner scopes duplicate detection by section
            extra[HINTS_KEY]["headings"] = headings
        return Extracted(
            text=unicodedata.normalize("NFC", text),
            title=meta.title,
            author="; ".join(meta.authors) or None,
            authors=meta.authors,
            published=meta.published,
            description=meta.description,
            sitename=meta.sitename,
            image=meta.image,
            tags=meta.tags,
            extra=extra,
            modified=meta.modified,
            canonical_url=meta.canonical_url,
            categories=meta.categories,
        )


_OUTSIDE_ARTICLE = frozenset({"nav", "aside", "header", "footer"})


def paragraph_chars(tree: etree._Element) -> int:
    """Characters of text in the page's ``<p>`` elements outside nav, aside, header and footer."""
    total = 0
    for p in tree.iter("p"):
        if not any(a.tag in _OUTSIDE_ARTICLE for a in p.iterancestors()):
            total += len(" ".join(p.text_content().split()))
    return total


def containment(text: str, other: str) -> float:
    """Share of ``text``'s words (counted with repeats) that are also in ``other``."""
    mine, theirs = Counter(text.split()), Counter(other.split())
    return sum((mine & theirs).values()) / (sum(mine.values()) or 1)


JOINS_KEY = "joins"
"""Key in ``Extracted.extra``: indexes of text lines that continue the line before them in one block
(the page's source broke a paragraph over several lines); the cleaner joins them after its decisions."""


def source_line_joins(text: str | None, body: etree._Element) -> list[int]:
    """Indexes of lines of trafilatura's ``text`` that continue the previous line in the same block.

    trafilatura keeps the source's line breaks inside a paragraph; its result tree, with white space
    collapsed, has one line a block. Aligning the two finds the continuations; [] when they disagree.
    """
    if not text or "\n" not in text:
        return []
    body = copy.deepcopy(body)
    for el in body.iter():
        if el.tag in _KEEP_LINES or any(a.tag in _KEEP_LINES for a in el.iterancestors()):
            continue
        if el.text and "\n" in el.text:
            el.text = _WS.sub(" ", el.text)
        if el.tail and "\n" in el.tail:
            el.tail = _WS.sub(" ", el.tail)
    blocks = [b for b in (" ".join(x.split()) for x in xmltotxt(body, False).split("\n")) if b]
    joins: list[int] = []
    j, acc = 0, ""
    for i, raw in enumerate(text.split("\n")):
        norm = " ".join(raw.split())
        if not norm:
            if acc:
                return []
            continue
        if acc:
            joins.append(i)
            acc = f"{acc} {norm}"
        else:
            acc = norm
        if j >= len(blocks):
            return []
        if acc == blocks[j]:
            j, acc = j + 1, ""
        elif not blocks[j].startswith(acc):
            return []
    return joins if not acc else []


_KEEP_LINES = frozenset({"code", "pre"})
_WS = re.compile(r"\s+")

MAX_FALLBACK_LINK_SHARE = 0.4
"""A readability-lxml result whose text is more than this share link text is a menu, not an article."""

EXTRACTOR_KEY = "extractor"
"""Key in ``Extracted.extra`` naming the library that made the text when it was not trafilatura."""

READABILITY = {"name": "readability-lxml", "version": _version("readability-lxml")}

_READABILITY_BLOCKS = frozenset(
    "p div h1 h2 h3 h4 h5 h6 li br tr blockquote pre figcaption dd dt section article table ul ol".split()
)


def readability_text(tree: etree._Element) -> tuple[str, list[str]]:
    """readability-lxml's main text of a parsed page, one block a line, and its headings' line keys."""
    from readability import Document
    from readability.readability import Unparseable

    try:
        summary = Document(tree).summary(html_partial=True)
    except (Unparseable, ValueError, TypeError):
        return "", []
    if not summary or not summary.strip():
        return "", []
    try:
        root = lxml.html.fragment_fromstring(summary, create_parent="div")
    except (etree.ParserError, ValueError):
        return "", []
    total = len(" ".join(root.text_content().split()))
    linked = sum(len(" ".join(a.text_content().split())) for a in root.iter("a"))
    if not total or linked > MAX_FALLBACK_LINK_SHARE * total:
        return "", []  # mostly link text: readability settled on a menu or a link list, not an article
    headings = [line_key(h.text_content()) for h in root.iter("h1", "h2", "h3", "h4", "h5", "h6")]
    for el in root.iter():  # one line a block: mark block edges, then collapse the source's white space
        if el.tag in _READABILITY_BLOCKS:
            el.tail = "\ue000" + (el.tail or "")
            if el.tag != "br":
                el.text = "\ue000" + (el.text or "")
    lines = (" ".join(line.split()) for line in root.text_content().split("\ue000"))
    return "\n".join(line for line in lines if line), headings


def page_hints(tree: etree._Element) -> dict[str, list[str]]:
    """Line keys of captions, link texts and furniture blocks found in the page's HTML structure."""
    links: list = []
    captions: list = []
    boxes: list = []  # (element, size_limited)
    verdicts: dict[str, int] = {}  # class string -> 0 none, 1 caption, 2 furniture; pages reuse few classes
    # one Python pass over the tree: each extra "//" XPath is another full walk (~0.3 ms per page)
    for el in tree.iter():
        tag = el.tag
        if tag == "a":
            links.append(el)
            continue
        if tag == "figcaption":
            captions.append(el)
            continue
        if tag in _BOX_TAGS:
            boxes.append((el, tag != "nav"))
            continue
        role = el.get("role")
        if role is not None and (role in _NAV_ROLES or role in _BOX_ROLES):
            boxes.append((el, role not in _NAV_ROLES))
            continue
        cls = el.get("class")
        if not cls:
            continue
        verdict = verdicts.get(cls)
        if verdict is None:
            low = cls.lower()
            verdict = 1 if _CAPTION_CLASS.search(low) else 2 if is_furniture_class(cls) else 0
            verdicts[cls] = verdict
        if verdict == 1:
            captions.append(el)
        elif verdict == 2:
            boxes.append((el, True))
    furniture: list[list[str]] = []
    taken: set = set()
    for box, size_limited in boxes:
        # boxes nest (a share bar inside a footer): a box inside a taken one adds nothing
        if any(parent in taken for parent in box.iterancestors()):
            continue
        if not size_limited or len(box.text_content()) <= MAX_FURNITURE_BOX_CHARS:
            taken.add(box)
            keys = _texts(box.iter(_LINE_BLOCKS))
            if keys:
                furniture.append(sorted(keys))
    return {
        "captions": sorted(_texts(captions)),
        "links": sorted(_texts(links)),
        "furniture": furniture,  # one list of line keys per box: the cleaner weighs each box as a whole
    }


def is_furniture_class(cls: str) -> bool:
    """Does a class attribute name a furniture box? Whole words only (camelCase, -, _ and -- split)."""
    for part in _CLASS_SPLIT.split(cls):
        if part and not any(ch.isdigit() for ch in part):  # "a3ad9f", "ad2": ids and hashes, not words
            if any(word.lower() in _FURNITURE_WORDS for word in _CLASS_WORD.findall(part)):
                return True
    return False


def _texts(elements) -> set[str]:
    out = set()
    for el in elements:
        key = line_key(el.text_content())
        if key and len(key) <= MAX_HINT_CHARS:
            out.add(key)
    return out


def _cap_size(html: str | bytes, max_bytes: int) -> str | bytes:
    if isinstance(html, bytes):
        return html[:max_bytes]
    # a str of n characters is n..4n UTF-8 bytes: only encode when it might be over the cap
    if len(html) * 4 <= max_bytes:
        return html
    data = html.encode("utf-8")
    if len(data) <= max_bytes:
        return html
    return data[:max_bytes].decode("utf-8", errors="ignore")
