"""Clean stage: deterministic per-document removal of repeated paragraphs and page furniture.

Works line by line (one paragraph per line) on an ``Extracted`` record. Two kinds of evidence:

* structure, from the hints the extract stage read off the HTML (``extract.page_hints``): a line that
  is the text of a ``<figcaption>``/caption element, the whole text of a link, or a block inside
  navigation / share / related / comment / cookie containers is furniture;
* wording, for short lines only: ad labels, share/follow/subscribe prompts, comment counters,
  "read more" / PREV / NEXT navigation, cookie notices, copyright and photo-credit lines. A long line
  is always treated as prose, so an article sentence that happens to say "subscribe" survives.

Nothing here keeps state between documents: the same record always gives the same output.
"""

from __future__ import annotations

import dataclasses
import re

from worker.pipeline.extract import HINTS_KEY, JOINS_KEY, Extracted, line_key

MAX_FURNITURE_WORDS = 12
"""Wording rules only apply to lines up to this many words: prompts and labels are short."""

MAX_LINK_LINE_WORDS = 30
"""A line that is entirely one link's text and at most this long is navigation, not prose."""

DEDUPE_SCOPES = ("section", "document")
"""Where a line may not repeat: within a section (between headings), or anywhere in the document."""

_WORD = re.compile(r"\w+")
_BULLET = re.compile(r"^[-*•·]\s+")
_TABLE_ROW = re.compile(r"^\|.*\|$")

_FURNITURE_PATTERNS = [
    # ad labels
    r"^(advertisements?|advertising|advertiser content|ads?|sponsored( content| post| links?)?|paid content"
    r"|promoted( content| stories)?|story continues below( advertisement)?|article continues below"
    r"|continue reading( the)?( main)? (story|article)( below)?|scroll (down )?to continue( reading)?"
    r"|skip (this )?ad(vertisement)?)\W*$",
    # share / follow / subscribe / newsletter prompts and widget labels
    r"^(share|share this( article| story| post| page)?|share on \w+|tweet|email|e-mail|print|print article"
    r"|order reprints|reprints?|save|save article|copy link|link copied|facebook|twitter|whatsapp|pinterest"
    r"|linkedin|reddit|telegram|messenger|flipboard|comment|comments)\W*$",
    r"^(follow|like) (us|@\w+|\w+ on (facebook|twitter|instagram|x|youtube|linkedin|tiktok))\b",
    r"\bfollow (us|him|her|them|@\w+|\w+) on (facebook|twitter|instagram|x|youtube|linkedin|tiktok)\b",
    r"^(like this (story|article)\?|enjoyed this (story|article)\?|share (it|this) with)",
    r"\b(click|tap) (here )?to (tweet|share|subscribe|sign up|get|download|read|see|watch|follow)\b",
    r"^(click|tap) here\b",
    r"\bclick to tweet$",
    r"\b(download|get) (the|our) [\w\s]{0,30}\bapp\b",
    r"^thanks? (you )?for (signing up|subscribing)\b",
    r"^(sorry!?|an error (has )?occurred.*|there was an error.*)$",
    # comment widgets and counters
    r"^(\d+\s+)?(comments?|replies|responses)\s*(\(\d+\))?\W*$",
    r"^comments?\s*[:(]?\s*\d+\)?$",
    r"^(sort(ed)? by|order by)\s*:?\s*(newest|oldest|best|top|popular|most recent|relevance)",
    r"^(newest|oldest|best|top rated|most popular)( first)?$",
    r"^(leave a (reply|comment)|post a comment|add a comment|write a comment|show comments|view comments"
    r"|load(ing)? comments|comments are closed|be the first to comment|want to join the discussion)\b",
    r"^(join the (discussion|conversation)|conversation|discussion)\W*$",
    # read-more / related / navigation labels, alone or introducing a headline
    r"^(read more|read next|read also|also read|keep reading|see also|see more|more|related"
    r"|related (articles?|stories|posts|coverage|content|links|news|topics)"
    r"|more (stories|news|articles|videos)"
    r"|recommended( for you| stories| articles| reading)?|you (may|might) also (like|enjoy)|don.t miss"
    r"|most (popular|read|viewed|shared)|popular( now| stories)?|trending( now| stories)?|what to read next"
    r"|up next|top stories|latest (news|stories|videos)|editor.s picks|in other news)\W*$",
    r"^(read more|read next|read also|also read|see also|related|more|don.t miss|watch|listen"
    r"|read the full (story|article)|continue reading)\s*[:|»>]",
    r"^read more (from|at|on)\b",
    r"^(more from|popular on|more stories from|more news from)\b",
    r"^(«|‹|<|←|<<)?\s*(prev|previous|next)\s*(article|story|post|page|slide)?\s*(»|›|>|→|>>)?\s*:?$",
    r"^(«|‹|←|<<)\s*\w|\w\s*(»|›|→|>>)$",
    r"^(back to top|go to top|home|menu|skip to (main )?content|toggle navigation|search)\W*$",
    r"^tags?\s*:?(\s|$)",
    r"^(topics|categories|filed under|posted in)\s*:",
    # the same labels in German, Spanish, French, Portuguese, Polish (most pages on the web are not English)
    r"^(weiter(lesen)?|mehr( dazu| zum thema| lesen| anzeigen)?|zurück|teilen|drucken|kommentare?|anzeige"
    r"|werbung|kategorien|schlagw(ö|oe)rter|themen|ähnliche (artikel|beiträge)"
    r"|das könnte sie auch interessieren|auch interessant|lesen sie auch|leer (más|también)|compartir"
    r"|imprimir|publicidad|comentarios?"
    r"|art[íi]culos relacionados|noticias relacionadas|te puede interesar|lire (aussi|la suite)|à lire aussi"
    r"|partager|imprimer|publicité|commentaires?|sur le même sujet|leia (também|mais)|compartilh(e|ar)"
    r"|publicidade|coment[áa]rios?|relacionad[oa]s|czytaj (też|także|więcej)|udostępnij|reklama|komentarze"
    r"|zobacz (też|także))\W*$",
    # copyright and photo credits
    r"^(copyright|©|\(c\)|ⓒ)",
    r"\ball rights reserved\b|\balle rechte vorbehalten\b|\btodos los derechos reservados\b"
    r"|\btous droits réservés\b|\btodos os direitos reservados\b|\bwszelkie prawa zastrzeżone\b"
    r"|\bvervielfältigung\b.{0,60}\b(genehmigung|gestattet|untersagt)\b",
    r"^(photos?|images?|pictures?|photograph|video|illustration|graphic|source)s?( credits?| by)?\s*[:/|©]",
    r"^(credits?|photo credit|image credit)\s*:",
    r"\((photo|image|picture|credit|getty|ap|afp|reuters|shutterstock)[^)]*\)$",
    r"^(getty images|shutterstock|ap photo|afp|reuters|epa|istock)\b.{0,40}$",
]
_FURNITURE_RE = re.compile("|".join(f"(?:{p})" for p in _FURNITURE_PATTERNS), re.IGNORECASE)

MAX_PROMPT_WORDS = 40
"""Newsletter prompts and cookie notices run longer than labels, but their wording is specific enough."""

_PROMPT_PATTERNS = [
    # newsletter / alert sign-up prompts: an imperative plus what you sign up for
    r"^\W*(sign up|signup|subscribe|register|join|get|receive|want|stay|never miss|don.t miss"
    r"|enter your e-?mail)"
    r"\b.{0,200}\b(newsletters?|inbox|e-?mails?|alerts|briefing|updates)\b",
    r"\b(sign up|subscribe) (for|to) (our|the|this)\b.{0,80}"
    r"\b(newsletters?|e-?mails?|alerts|briefing|updates)\b",
    # cookie notices
    r"\b(we|this (web)?site|our (web)?site) uses? cookies\b|\bcookie (policy|settings|preferences|consent)\b"
    r"|\baccept (all )?cookies\b",
]
_PROMPT_RE = re.compile("|".join(f"(?:{p})" for p in _PROMPT_PATTERNS), re.IGNORECASE)
# PREV/NEXT must stay case-sensitive: "Next, the committee..." is prose
_CASED_RE = re.compile(r"^(PREV|PREVIOUS|NEXT)\b")


def token_key(text: str) -> str:
    """Case-, whitespace- and punctuation-insensitive form of a line, for duplicate detection."""
    return " ".join(_WORD.findall(text.casefold()))


def is_furniture_wording(line: str, words: int | None = None) -> bool:
    """True when a short line reads like a page-furniture label or prompt rather than prose."""
    if words is None:
        words = len(_WORD.findall(line))
    if words > MAX_PROMPT_WORDS:
        return False
    if words <= MAX_FURNITURE_WORDS and _FURNITURE_RE.search(line):
        return True
    return bool(_PROMPT_RE.search(line))


class Cleaner:
    """Returns a cleaned copy of an ``Extracted`` record; the same input always gives the same output.

    Each rule can be switched off for measurement: ``dedupe``, ``drop_title``, ``structure`` (the HTML
    hints), ``wording`` (short furniture lines).
    """

    def __init__(
        self,
        *,
        dedupe: bool = True,
        dedupe_scope: str = "section",
        drop_title: bool = True,
        structure: bool = True,
        wording: bool = True,
    ) -> None:
        if dedupe_scope not in DEDUPE_SCOPES:
            raise ValueError(f"dedupe_scope must be one of {DEDUPE_SCOPES}")
        self.dedupe = dedupe
        self.dedupe_scope = dedupe_scope
        self.drop_title = drop_title
        self.structure = structure
        self.wording = wording

    def clean(self, doc: Extracted) -> Extracted:
        """Drop repeated paragraphs, furniture lines and a leading repeat of the title."""
        extra = dict(doc.extra)
        hints = extra.pop(HINTS_KEY, None) or {}
        joins = set(extra.pop(JOINS_KEY, None) or ())
        lines, keys, origin = [], [], []
        for n, raw in enumerate(doc.text.split("\n")):
            key = token_key(raw)
            if key:  # lines without a single word (separators, stray punctuation) carry no text
                lines.append(" ".join(raw.split()))
                keys.append(key)
                origin.append(n)
        words = [key.count(" ") + 1 for key in keys]
        keep = [True] * len(lines)
        headings = set(hints.get("headings", ()))
        if self.drop_title:
            _drop_leading_repeats(keys, lines, keep, doc, headings)
        if self.structure and hints:
            self._drop_structural(lines, words, keep, hints)
        if self.wording:
            for i, line in enumerate(lines):
                if keep[i] and (is_furniture_wording(line, words[i]) or _CASED_RE.match(line)):
                    keep[i] = False
        if self.dedupe:
            _drop_repeats(keys, lines, keep, headings, self.dedupe_scope)
        # decisions are per source line (as the hints see them); the text is one paragraph per line: a
        # kept line that continues the kept line before it in the same block is joined to it
        out: list[str] = []
        previous = -2
        for i, line in enumerate(lines):
            if keep[i]:
                if origin[i] in joins and origin[i] == previous + 1 and out:
                    out[-1] = f"{out[-1]} {line}"
                else:
                    out.append(line)
                previous = origin[i]
        text = "\n".join(out)
        return dataclasses.replace(doc, text=text, tags=list(doc.tags), extra=extra)

    @staticmethod
    def _drop_structural(lines: list[str], words: list[int], keep: list[bool], hints: dict) -> None:
        captions = set(hints.get("captions", ()))
        furniture = _furniture_keys(hints.get("furniture", ()), lines, words)
        links = set(hints.get("links", ()))
        link_starts = {" ".join(key.split()[:2]) for key in links}
        # 0: not link text, 1: the line is one link's text, 2: the line starts with a link (headline + teaser)
        kind = [0] * len(lines)
        for i, line in enumerate(lines):
            bare = _BULLET.sub("", line)
            lkey = line_key(bare)
            if lkey in captions or lkey in furniture:
                keep[i] = False
            elif not _URLISH.match(bare) and not (
                words[i] >= MIN_LINKED_SENTENCE_WORDS and _SENTENCE_END.search(bare)
            ):
                # a link whose text is a URL was written out by the author as a reference, and a linked
                # sentence is the author's prose: content; short labels and headlines are navigation
                kind[i] = _link_kind(lkey, links, link_starts)
        prose = [keep[i] and not kind[i] and words[i] >= MIN_PROSE_WORDS for i in range(len(lines))]
        first_prose = prose.index(True) if any(prose) else len(lines)
        last_prose = len(prose) - 1 - prose[::-1].index(True) if any(prose) else -1
        for i in range(len(lines)):
            if not kind[i]:
                continue
            # a lone link line between paragraphs is usually the author's; runs and edges are navigation
            in_run = (i > 0 and kind[i - 1]) or (i + 1 < len(lines) and kind[i + 1])
            if in_run or i < first_prose or i > last_prose:
                keep[i] = False


MAX_BOX_SHARE = 0.5
"""A furniture-looking box whose lines hold more than this share of the page's words is the article
itself (a Drupal ``node--promoted``, a review's ``Section--Ads`` of pros and cons): never furniture."""

MIN_LINKED_SENTENCE_WORDS = 12
"""A line that is all link text but reads as a sentence (this many words, final punctuation) is prose."""

_SENTENCE_END = re.compile(r"[.!…。！]['\"”’»)]*$")


def _furniture_keys(boxes, lines: list[str], words: list[int]) -> set[str]:
    """Line keys of the furniture boxes, without a box that holds most of the text (see MAX_BOX_SHARE)."""
    if not boxes:
        return set()
    if isinstance(boxes[0], str):  # hints of an older extract stage: one flat list
        boxes = [boxes]
    total = sum(words) or 1
    word_of = {}
    for line, n in zip(lines, words, strict=True):
        word_of[line_key(_BULLET.sub("", line))] = n
    out: set[str] = set()
    for box in boxes:
        if sum(word_of.get(key, 0) for key in set(box)) <= MAX_BOX_SHARE * total:
            out.update(box)
    return out


MIN_PROSE_WORDS = 12
"""Lines with at least this many words (and not link text) count as article prose for position rules."""

MIN_HEADLINE_SHARE = 0.2
"""A line starting with a link covering at least this share of its words is a headline + teaser item."""

_URLISH = re.compile(r"^(https?://|www\.)\S+$|^\S+\.(com|org|net|co|io)(/\S*)?$", re.IGNORECASE)


def _link_kind(lkey: str, links: set[str], link_starts: set[str]) -> int:
    words = lkey.split()
    if lkey in links:
        return 1 if len(words) <= MAX_LINK_LINE_WORDS else 0
    if len(words) < 3 or " ".join(words[:2]) not in link_starts:
        return 0
    shortest = max(2, round(MIN_HEADLINE_SHARE * len(words)))
    for n in range(min(len(words) - 1, MAX_LINK_LINE_WORDS), shortest - 1, -1):
        if " ".join(words[:n]) in links:
            return 2
    return 0


def _drop_leading_repeats(
    keys: list[str], lines: list[str], keep: list[bool], doc: Extracted, headings: set[str]
) -> None:
    """Drop the title, and a heading repeating the page description (the dek), from the top of the text.

    Both are already in the record's metadata. A description that reads as the first *paragraph* is
    kept: many sites copy their lead paragraph into the meta description.
    """
    title = token_key(doc.title or "")
    description = token_key(doc.description or "")
    for i in range(min(len(lines), LEADING_LINES)):
        key = keys[i]
        if key == title:
            keep[i] = False
        elif key == description and line_key(lines[i]) in headings:
            keep[i] = False


LEADING_LINES = 3
"""How far from the top a repeated title or dek is looked for (title, dek, then the first paragraph)."""


def _drop_repeats(
    keys: list[str], lines: list[str], keep: list[bool], headings: set[str], scope: str
) -> None:
    """Keep the first occurrence of each line per section (per document when ``scope="document"``).

    A section starts at each heading. Across sections a repeat is template structure, not a copy:
    the same ingredient under "Plan A" and "Plan B", the same question put to each interviewee.
    On the benchmark, repeats inside a section were junk 438 times out of 447; across sections,
    legitimate 240 times out of 247.
    """
    seen: set[tuple[int, str]] = set()
    section = 0
    previous = ""
    for i, line in enumerate(lines):
        if not keep[i]:
            continue
        key = keys[i]
        if scope == "section" and line_key(line) in headings and key != previous:
            section += 1
        previous = key
        if _TABLE_ROW.match(line):
            continue
        if (section, key) in seen:
            keep[i] = False
        else:
            seen.add((section, key))
