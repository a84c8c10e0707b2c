"""Page metadata from one parsed tree: headline, person names, dates, site, tags; cheap and general.

One walk over the ``<meta>``, ``<link>``, ``<title>`` and JSON-LD elements (C-level ``iter`` by tag),
the article object of the JSON-LD read as JSON, then fallbacks from the body (a byline element, the
single ``<h1>``, htmldate for a date) only when the head says nothing. No per-site rules: the rules
are about what a headline, a person's name or a date looks like in any language.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass, field

from lxml import etree

_ARTICLE_TYPES = frozenset(
    t.casefold()
    for t in (
        "Article NewsArticle BlogPosting ReportageNewsArticle AnalysisNewsArticle OpinionNewsArticle "
        "ReviewNewsArticle BackgroundNewsArticle TechArticle ScholarlyArticle Report LiveBlogPosting "
        "SocialMediaPosting DiscussionForumPosting SatiricalArticle AdvertiserContentArticle Recipe "
        "MedicalScholarlyArticle HowTo Review"
    ).split()
)
_PAGE_TYPES = frozenset({"webpage", "itempage", "collectionpage", "aboutpage", "profilepage", "qapage"})

_TITLE_KEYS = ("dc:title", "dcterm:title", "dc.title", "dcterms.title", "og:title", "title", "twitter:title",
               "parsely-title", "sailthru.title")  # fmt: skip
_SITE_KEYS = ("og:site_name", "application-name", "al:ios:app_name", "twitter:app:name:iphone")
_DESCRIPTION_KEYS = ("og:description", "description", "twitter:description", "dc.description")
_IMAGE_KEYS = ("og:image", "og:image:url", "og:image:secure_url", "twitter:image", "twitter:image:src")
_AUTHOR_KEYS = ("author", "article:author", "parsely-author", "sailthru.author", "dc.creator",
                "dcterms.creator", "dc:creator", "byl", "citation_author", "book:author")  # fmt: skip
_PUBLISHED_KEYS = ("article:published_time", "article:published", "og:published_time", "datepublished",
                   "published_time", "publishdate", "pubdate", "publish-date", "parsely-pub-date",
                   "sailthru.date", "dc.date.issued", "dcterms.issued", "dcterms.created", "dc.date",
                   "citation_publication_date", "citation_date", "date", "article.published", "og:pubdate",
                   "release_date", "datecreated", "dc.date.created")  # fmt: skip
_MODIFIED_KEYS = ("article:modified_time", "article:modified", "og:updated_time", "datemodified",
                  "dcterms.modified", "dc.date.modified", "last-modified", "modified", "revised",
                  "article.updated")  # fmt: skip
_TAG_KEYS = ("article:tag", "news_keywords", "keywords", "parsely-tags", "sailthru.tags", "dc.subject")
_SECTION_KEYS = ("article:section", "parsely-section", "section", "category")
_ONE_VALUE_PER_META = frozenset({"article:tag", "article:section"})
"""These repeat one meta element per value, so a comma inside one is part of the value ("Bevin, Matthew")."""

_SEPARATORS = re.compile(r"\s+[|\-–—·•»«/\\:>~]\s+|\s*[|·•»«]\s*|\s+_|_\s+")
_HIERARCHY = re.compile(r"\s[\\/>»]\s")


@dataclass(slots=True)
class PageMeta:
    """What the page says about itself; values raw but whitespace-collapsed, None/[] when absent."""

    title: str | None = None
    authors: list[str] = field(default_factory=list)
    published: str | None = None
    modified: str | None = None
    description: str | None = None
    sitename: str | None = None
    image: str | None = None
    canonical_url: str | None = None
    tags: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)


def read_metadata(tree: etree._Element, url: str | None = None, *, date_fallback: bool = True) -> PageMeta:
    """Metadata of a parsed page (see the module docstring); ``date_fallback`` lets htmldate search."""
    metas: dict[str, list[str]] = {}
    canonical = None
    title_el = None
    ld: list[dict] = []
    for el in tree.iter("meta", "link", "title", "script"):
        tag = el.tag
        if tag == "meta":
            content = el.get("content")
            if not content or not content.strip():
                continue
            for attr in ("property", "name", "itemprop", "http-equiv"):
                key = el.get(attr)
                if key:
                    for k in key.lower().split():
                        metas.setdefault(k, []).append(_ws(content))
        elif tag == "link":
            if canonical is None and "canonical" in (el.get("rel") or "").lower().split() and el.get("href"):
                canonical = el.get("href").strip()
        elif tag == "title":
            if title_el is None and el.getparent() is not None and el.getparent().tag == "head":
                title_el = el
        elif (el.get("type") or "").lower().strip() == "application/ld+json" and el.text:
            ld.extend(_json_objects(el.text))
    article = _article_object(ld)
    meta = PageMeta()
    publisher = _name_of(article.get("publisher")) if article else None
    if not publisher:
        publisher = next(
            (_name_of(o) for o in ld if _types(o) & {"organization", "newsmediaorganization"}), None
        )
    meta.sitename = _first(metas, _SITE_KEYS) or publisher
    if meta.sitename and meta.sitename.startswith("@"):
        meta.sitename = meta.sitename[1:]
    title_text = _ws("".join(title_el.itertext())) if title_el is not None else None
    meta_titles = [v for k in _TITLE_KEYS for v in metas.get(k, ())[:1]]
    headline = None
    if article:  # JSON-LD's headline, or its name, when it agrees with the page's own titles
        others = [t for t in (title_text, *meta_titles) if t]
        for key in ("headline", "name"):
            value = _ws(_text_of(article.get(key)))
            if value and (not others or any(_overlap(value, t) >= 0.5 for t in others)):
                headline = value
                break
    meta.title = clean_title(
        headline,
        meta_titles,
        title_text,
        tree,
        site_names=[n for n in (meta.sitename, publisher, _domain_label(url or canonical)) if n],
    )
    meta.description = _first(metas, _DESCRIPTION_KEYS) or (
        _ws(_text_of(article.get("description"))) if article else None
    )
    meta.image = _first(metas, _IMAGE_KEYS) or (_image_of(article.get("image")) if article else None)
    meta.canonical_url = canonical or _first(metas, ("og:url",)) or url
    # people: the article object's authors, else the author meta elements, else a byline in the body
    exclude = {n.casefold() for n in (meta.sitename, publisher) if n}
    if article:
        meta.authors = _persons(article.get("author") or article.get("creator"), exclude)
    if not meta.authors:
        for key in _AUTHOR_KEYS:
            names: list[str] = []
            for value in metas.get(key, ()):
                if not value.startswith(("http://", "https://", "/")):
                    names.extend(n for n in person_names(value, exclude) if n not in names)
            if names:
                meta.authors = names
                break
    if not meta.authors:
        meta.authors = _byline_names(tree, exclude)
    # dates: as the page gives them (time and offset kept); htmldate only when the page declares none
    meta.published = (_ws(_text_of(article.get("datePublished"))) if article else None) or _first(
        metas, _PUBLISHED_KEYS
    )
    if not meta.published:
        meta.published = _time_element(tree)
    meta.modified = (_ws(_text_of(article.get("dateModified"))) if article else None) or _first(
        metas, _MODIFIED_KEYS
    )
    if not meta.published and date_fallback:
        meta.published = _htmldate(tree, url or canonical)
    meta.tags = _values(metas, _TAG_KEYS, article.get("keywords") if article else None)
    meta.categories = _values(metas, _SECTION_KEYS, article.get("articleSection") if article else None)
    return meta


# -- title ------------------------------------------------------------------------------------------------


def clean_title(
    headline: str | None,
    meta_titles: list[str],
    title_text: str | None,
    tree: etree._Element | None = None,
    site_names: list[str] = (),
) -> str | None:
    """The headline without the site's name: JSON-LD headline, then title metas, then ``<title>``.

    A known site name is cut from either end ("Headline | Site", "Site - Headline", "Headline _Site");
    a ``<title>`` with separators and no known site name loses the shorter outer part, unless what
    is left would be under three words (then the whole title stays).
    """
    for candidate in [headline, *meta_titles]:
        if candidate:
            return strip_site_name(candidate, site_names)
    if title_text:
        title = strip_site_name(title_text, site_names)
        if title != title_text:
            return title
        return _title_by_separators(title_text, tree)
    if tree is not None:
        h1s = [_ws("".join(h.itertext())) for h in tree.iter("h1")]
        h1s = [h for h in h1s if h]
        if len(h1s) == 1:
            return h1s[0]
    return None


def strip_site_name(title: str, site_names: list[str]) -> str:
    """``title`` without a leading or trailing segment that is one of ``site_names`` (case-insensitive)."""
    title = _ws(title) or ""
    names = {_fold(n) for n in site_names if n and len(n) > 1}
    parts = [p.strip() for p in title.split("_")]
    if len(parts) >= 3 or (len(parts) == 2 and _fold(parts[1]) in names):
        # "Headline_Section_Site" (portals, Chinese sites above all): the headline is the first part
        head = parts[0]
        if len(head.split()) >= 2 or len(head) >= 6:
            return head
    if not names:
        return title
    for _ in range(2):  # "Headline | Section | Site": the site, then nothing else unless also a name
        parts = [m for m in _SEPARATORS.finditer(title)]
        if not parts:
            break
        first, last = parts[0], parts[-1]
        if _fold(title[last.end() :]) in names and last.start() > 0:
            title = title[: last.start()].strip()
        elif _fold(title[: first.start()]) in names and first.end() < len(title):
            title = title[first.end() :].strip()
        else:
            break
    return title


def _title_by_separators(title: str, tree: etree._Element | None) -> str:
    # after Mozilla Readability's _getArticleTitle
    words = len(title.split())
    parts = list(_SEPARATORS.finditer(title))
    out = title
    hierarchical = bool(_HIERARCHY.search(title))
    if parts and not title[parts[-1].start() : parts[-1].end()].strip() == ":":
        last = parts[-1]
        out = title[: last.start()].strip()
        if len(out.split()) < 3:
            out = title[parts[0].end() :].strip()
    elif ": " in title:
        headings = {_ws("".join(h.itertext())) for h in tree.iter("h1", "h2")} if tree is not None else set()
        if title not in headings:
            out = title[title.rfind(":") + 1 :].strip()
            if len(out.split()) < 3:
                out = title[title.find(":") + 1 :].strip()
            elif len(title[: title.find(":")].split()) > 5:
                out = title
    elif (len(title) > 150 or len(title) < 15) and tree is not None:
        h1s = [_ws("".join(h.itertext())) for h in tree.iter("h1")]
        if len(h1s) == 1 and h1s[0]:
            out = h1s[0]
    n = len(out.split())
    if n <= 4 and (not hierarchical or n != words - len(parts) - 1):
        out = title
    return out


# -- people -----------------------------------------------------------------------------------------------

_LEAD_WORDS = re.compile(
    r"^\s*(?:(?:written|posted|reviewed|reported|edited|text|words|story|photos?|published|updated)\s+by"
    r"|by|par|von|vom|por|porf|door|di|da|przez|av|af|от|автор|авторы|текст|بقلم|作者|文|记者|撰文|編集)"
    r"\s*[:：]?\s+",
    re.IGNORECASE,
)
_SPLIT = re.compile(
    r"\s*(?:;|\||/|、|，|\s+(?:and|und|et|y|e|og|en|i|und|&|и|ve|și|és)\s+|\s*&\s*)\s*", re.IGNORECASE
)
_NOT_AUTHORS = re.compile(
    r"\b(?:edited|reviewed|fact[- ]checked|photos?|photographs?|illustrations?|images?|video|graphics?)"
    r"\s+by\b|\b(?:updated|published|posted)\b",
    re.IGNORECASE,
)
_PAREN = re.compile(r"\([^)]*\)|\[[^\]]*\]|<[^>]*>")
_HANDLE = re.compile(r"(?:https?://|www\.)\S+|\S+@\S+|@\w+")
_MONTHS = (
    "january february march april may june july august september october november december jan feb mar apr "
    "jun jul aug sep sept oct nov dec januar februar märz mai juni juli oktober dezember janvier février "
    "mars avril juin juillet août septembre octobre novembre décembre enero febrero marzo abril mayo junio "
    "julio agosto septiembre octubre noviembre diciembre monday tuesday wednesday thursday friday saturday "
    "sunday montag dienstag mittwoch donnerstag freitag samstag sonntag lundi mardi mercredi jeudi vendredi "
    "samedi dimanche lunes martes miércoles jueves viernes sábado domingo today yesterday heute gestern"
).split()
_DATE_WORDS = frozenset(_MONTHS)
_ROLE_WORDS = frozenset(
    (
        "editor editors writer writers reporter reporters correspondent correspondents columnist contributor "
        "contributors staff producer photographer author authors journalist journalists redaktion redakteur "
        "redakteurin rédaction redacción redação autor autora auteur desk team bureau intern chief senior "
        "associate deputy managing contributing special updated update last published posted username "
        "user admin administrator anonymous guest follow subscribe share email newsletter profile view all "
        "more articles about ap afp reuters dpa epa ansa efe press wire agency agencies news newsroom "
        "control authority wikipedia wikimedia projects mcupdate ltd inc llc gmbh"
    ).split()
)
_DEGREES = frozenset("ma md phd ph.d msc bsc mba rn dr prof jr sr ii iii".split())
_PARTICLES = frozenset(
    "de da di del della der den van von la le du dos das ter ten bin al el ibn zu y".split()
)
_LABELS = frozenset({"作者", "记者", "编辑", "来源", "责任编辑", "撰稿", "文", "图", "著者", "筆者", "기자"})
_UNSPACED = re.compile(r"^[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]{2,5}$")


def person_names(value: str, exclude: set[str] = frozenset()) -> list[str]:
    """The persons named in a byline string, each as "Given Family" (title-cased when written in capitals).

    Drops "By"/"Par"/"Von" lead words, dates, parenthesised asides, URLs and handles, job titles
    ("AP Auto Writer", "Games Editor"), degrees ("MA"), agencies, site names in ``exclude`` and words
    such as "Username"; "Family, Given" (one comma, one word before it) is one person.
    """
    value = _HANDLE.sub(" ", _PAREN.sub(" ", unicodedata.normalize("NFC", value or "")))
    value = _NOT_AUTHORS.split(value, 1)[0]  # "Written by A. Edited by B.": B is not an author
    value = _ws(value) or ""
    out: list[str] = []
    for chunk in _SPLIT.split(value):
        for part in _comma_parts(chunk):
            name = _person(part, exclude)
            if name and name.casefold() not in {n.casefold() for n in out}:
                out.append(name)
    return out


def _comma_parts(chunk: str) -> list[str]:
    parts = [p.strip() for p in chunk.split(",") if p.strip()]
    if len(parts) == 2 and len(parts[0].split()) == 1 and 1 <= len(parts[1].split()) <= 3:
        second = parts[1].split()
        if second[0].rstrip(".").casefold() not in _DEGREES and second[0].casefold() not in _ROLE_WORDS:
            return [f"{parts[1]} {parts[0]}"]  # "Jong, Michiel de" -> "Michiel de Jong"
    return parts


def _person(part: str, exclude: set[str]) -> str | None:
    part = _LEAD_WORDS.sub("", part).strip(" .:-–—·|")
    part = _LEAD_WORDS.sub("", part).strip(" .:-–—·|")
    if not part or part.casefold() in exclude:
        return None
    if _UNSPACED.match(part):
        return None if part in _LABELS else part
    words = []
    tokens = part.split()
    for i, word in enumerate(tokens):
        bare = word.strip(".,:;!?\"'“”«»").casefold()
        if not any(ch.isalnum() for ch in bare):
            break  # "Name — 12 March", "Name | Site": a separator ends the name
        if any(ch.isdigit() for ch in bare):
            break  # a date or a time follows the name
        if bare in _DATE_WORDS and (i + 1 == len(tokens) or any(ch.isdigit() for ch in tokens[i + 1])):
            break  # "Laura June Topolsky July 22": a month before a number, or last, is a date
        if bare in _DEGREES and words:
            break
        words.append(word.strip(',;:"“”«»'))
    if not words or not 2 <= len(words) <= 5:
        return None
    if sum(len(w.strip(".")) > 1 for w in words) < 2:
        return None  # initials only ("J J", "F. K."): a handle or a signature, not a name we can use
    if any(w.strip(".").casefold() in _ROLE_WORDS for w in words):
        return None
    if not all(w[0].isupper() or w.casefold() in _PARTICLES for w in words if w[0].isalpha()):
        return None
    if not any(ch.isalpha() for ch in "".join(words)):
        return None
    name = " ".join(words)
    if name.isupper():
        name = " ".join(w if w.casefold() in _PARTICLES else w.capitalize() for w in name.split())
    return None if name.casefold() in exclude else name


def _persons(value, exclude: set[str]) -> list[str]:
    out: list[str] = []
    for item in value if isinstance(value, list) else [value]:
        if isinstance(item, dict):
            types = _types(item)
            if types and not types & {"person"}:
                continue  # an Organization is not a person
            name = _text_of(item.get("name"))
            if not name and (item.get("givenName") or item.get("familyName")):
                name = f"{_text_of(item.get('givenName')) or ''} {_text_of(item.get('familyName')) or ''}"
            item = name
            if "person" in types:  # declared a Person: a personal site may carry its owner's name
                names = person_names(item or "")
                out.extend(n for n in names if n not in out)
                continue
        if isinstance(item, str) and not item.startswith(("http://", "https://")):
            out.extend(n for n in person_names(item, exclude) if n not in out)
    return out


_BYLINE_TOKEN = re.compile(
    r"^(?:[a-z0-9]*byline|(?:[a-z0-9]+[-_]{1,2})*(?:author|authors|autor|auteur|writer|authorname))"
    r"(?:[-_]{1,2}(?:name|names|link|info|text|wrapper|block|container|author))?$"
)
MAX_BYLINE_CHARS = 200
"""A byline element longer than this is a container (an author box with a biography), not a byline."""


def _byline_names(tree: etree._Element, exclude: set[str]) -> list[str]:
    """Names in the first byline-like element of the body: rel=author, itemprop=author, class byline."""
    body = tree.find("body")
    if body is None:
        return []
    for el in body.iter():
        if not isinstance(el.tag, str) or el.tag in ("script", "style", "meta", "link"):
            continue
        if el.tag == "a" and "author" in (el.get("rel") or "").split():
            pass
        elif "author" in (el.get("itemprop") or "").split():
            itemtype = (el.get("itemtype") or "").lower()
            if itemtype and "person" not in itemtype:
                continue
        else:
            cls = el.get("class")
            if not cls or not any(_BYLINE_TOKEN.match(tok) for tok in cls.lower().split()):
                continue
        inner = el.find(".//*[@itemprop='name']")
        text = _ws(inner.text_content() if inner is not None else el.text_content())
        if text and len(text) <= MAX_BYLINE_CHARS:
            names = person_names(text, exclude)
            if names:
                return names
    return []


# -- dates, tags, JSON-LD -----------------------------------------------------------------------------------


def _time_element(tree: etree._Element) -> str | None:
    for el in tree.iter("time"):
        if el.get("datetime") and (
            "datepublished" in (el.get("itemprop") or "").lower() or "pubdate" in el.attrib
        ):
            return el.get("datetime").strip()
    return None


def _htmldate(tree: etree._Element, url: str | None) -> str | None:
    from htmldate import find_date

    try:
        return find_date(tree, url=url, original_date=True, extensive_search=False, outputformat="%Y-%m-%d")
    except Exception:  # htmldate parses whatever the page holds; a bad page must not fail extraction
        return None


def _values(metas: dict[str, list[str]], keys: tuple[str, ...], ld_value) -> list[str]:
    out: list[str] = []
    found = False
    for key in keys:
        for value in metas.get(key, ()):
            found = True
            pieces = [value] if key in _ONE_VALUE_PER_META else _split_list(value)
            out.extend(p for p in pieces if p not in out)
        if found:
            break
    if not out and ld_value:
        for item in ld_value if isinstance(ld_value, list) else [ld_value]:
            if isinstance(item, str):
                out.extend(p for p in _split_list(item) if p not in out)
    return out


def _split_list(value: str) -> list[str]:
    # "a; b" lists keep commas inside items ("Bevin, Matthew; Kentucky"); otherwise commas separate
    sep = ";" if ";" in value else ","
    return [t for t in (_ws(p) for p in value.split(sep)) if t]


_JSON_WRAPPER = re.compile(r"^\s*(?://\s*)?(?:<!\[CDATA\[|<!--)|(?://\s*)?(?:\]\]>|-->)\s*$")


def _json_objects(text: str) -> list[dict]:
    try:
        data = json.loads(text)
    except ValueError:
        try:  # XHTML pages wrap it in CDATA or a comment; some end it with a semicolon
            data = json.loads(_JSON_WRAPPER.sub("", text.strip()).strip().rstrip(";"), strict=False)
        except ValueError:
            return []
    out: list[dict] = []
    stack = [data]
    while stack and len(out) < 200:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        elif isinstance(item, dict):
            out.append(item)
            if isinstance(item.get("@graph"), list):
                stack.extend(reversed(item["@graph"]))
            main = item.get("mainEntity")
            if isinstance(main, dict | list):
                stack.append(main)
    return out


def _article_object(objects: list[dict]) -> dict:
    for obj in objects:
        if _types(obj) & _ARTICLE_TYPES:
            return obj
    for obj in objects:
        if _types(obj) & _PAGE_TYPES and any(obj.get(k) for k in ("headline", "author", "datePublished")):
            return obj
    return {}


def _types(obj: dict) -> set[str]:
    t = obj.get("@type") if isinstance(obj, dict) else None
    return {str(x).casefold().rsplit("/", 1)[-1] for x in (t if isinstance(t, list) else [t]) if x}


def _name_of(value) -> str | None:
    if isinstance(value, list):
        value = value[0] if value else None
    if isinstance(value, dict):
        value = value.get("name")
    return _ws(_text_of(value))


def _image_of(value) -> str | None:
    if isinstance(value, list):
        value = value[0] if value else None
    if isinstance(value, dict):
        value = value.get("url") or value.get("contentUrl")
    return _ws(value) if isinstance(value, str) else None


def _text_of(value) -> str | None:
    if isinstance(value, list):
        value = next((v for v in value if isinstance(v, str)), None)
    return value if isinstance(value, str) else None


def _first(metas: dict[str, list[str]], keys: tuple[str, ...]) -> str | None:
    for key in keys:
        values = metas.get(key)
        if values:
            return values[0]
    return None


def _domain_label(url: str | None) -> str | None:
    m = re.match(r"^https?://(?:www\.)?([^/:.]+)", url or "")
    return m.group(1) if m else None


def _overlap(a: str, b: str) -> float:
    """Share of ``a``'s words that are also in ``b`` (case-folded)."""
    wa, wb = set(_WORDS.findall(a.casefold())), set(_WORDS.findall(b.casefold()))
    return len(wa & wb) / len(wa) if wa else 0.0


_WORDS = re.compile(r"\w+")


def _fold(text: str) -> str:
    return " ".join(text.casefold().split()).strip(" .")


def _ws(value) -> str | None:
    if not isinstance(value, str):
        return None
    value = " ".join(value.split())
    return value or None
