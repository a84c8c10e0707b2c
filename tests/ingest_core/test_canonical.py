"""Canonicalization: one spelling per page, and a specific reason for every refused URL."""

from __future__ import annotations

import pytest

from ingest_core.canonical import _strip_tracking, canonicalize, url_id
from ingest_core.errors import InvalidURL


@pytest.mark.parametrize(
    ("url", "canonical"),
    [
        ("HTTP://Example.COM/a", "http://example.com/a"),
        ("https://example.com:443/a", "https://example.com/a"),
        ("http://example.com:8080/a", "http://example.com:8080/a"),
        ("https://example.com", "https://example.com/"),
        ("https://example.com./a", "https://example.com/a"),
        ("https://example.com/a#section-2", "https://example.com/a"),
        ("https://example.com/a?b=2&a=1", "https://example.com/a?a=1&b=2"),
        (
            "https://example.com/a?utm_source=x&utm_Medium=y&id=7&fbclid=z&gclid=q",
            "https://example.com/a?id=7",
        ),
        ("https://bücher.example/straße", "https://xn--bcher-kva.example/stra%C3%9Fe"),
        ("https://example.com/a/./b/../c", "https://example.com/a/c"),
        ("https://example.com/%7euser", "https://example.com/~user"),
        ("  https://example.com/a  ", "https://example.com/a"),
        ("http://[2001:DB8::1]:80/x", "http://[2001:db8::1]/x"),
    ],
)
def test_spellings_of_one_page_have_one_canonical_form(url: str, canonical: str) -> None:
    """Case, default port, fragment, parameter order, tracking parameters, IDN and dots do not matter."""
    assert canonicalize(url) == canonical


def test_extra_tracking_parameters_are_configurable() -> None:
    """Parameters named in strip_params are removed like the built-in tracking ones."""
    assert (
        canonicalize("https://e.com/a?ref=home&id=1", strip_params=frozenset({"ref"}))
        == "https://e.com/a?id=1"
    )


def test_record_id_is_stable_for_one_canonical_url() -> None:
    """Two spellings give the same 32-hex-digit record id."""
    a, b = url_id(canonicalize("https://E.com/a?utm_source=x")), url_id(canonicalize("https://e.com/a"))
    assert a == b and len(a) == 32


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("", "empty_url"),
        ("   ", "empty_url"),
        ("https://e.com/" + "a" * 3000, "url_too_long"),
        ("https://e.com/a\x00b", "control_character"),
        ("https://e.com/a\tb", "control_character"),
        ("https://e.com/caf\udce9", "not_utf8"),
        ("not a url", "invalid_url"),
        ("//e.com/a", "invalid_url"),
        ("http:/e.com/a", "invalid_url"),
        ("ftp://e.com/a", "unsupported_scheme"),
        ("mailto:someone@example.com", "unsupported_scheme"),
        ("javascript:alert(1)", "unsupported_scheme"),
        ("https://e.com/a b", "whitespace_in_url"),
        ("http://", "missing_host"),
        ("https://user:secret@e.com/a", "credentials_in_url"),
        ("https://token@e.com/a", "credentials_in_url"),
        ("https://e.com:99999/a", "invalid_port"),
        ("https://-bad-.com/a", "invalid_host"),
        ("https://e..com/a", "invalid_host"),
        ("https://e_<x>.com/a", "invalid_host"),
    ],
)
def test_each_refused_url_has_its_reason(url: str, reason: str) -> None:
    """Every way a URL can be unusable raises InvalidURL with a specific reason code."""
    with pytest.raises(InvalidURL) as caught:
        canonicalize(url)
    assert caught.value.reason == reason


def test_plain_url_fast_path_gives_what_w3lib_gives() -> None:
    """URLs made of unreserved characters skip w3lib; the result must be the one w3lib would give."""
    import random
    import string
    from urllib.parse import urlunsplit

    from w3lib.url import canonicalize_url

    rng = random.Random(7)
    alpha = string.ascii_letters + string.digits + "-._~"

    def word(lo: int, hi: int) -> str:
        return "".join(rng.choice(alpha) for _ in range(rng.randint(lo, hi)))

    for _ in range(5000):
        path = "/" + "/".join(word(0, 6) for _ in range(rng.randint(0, 4)))
        pairs = [f"{word(1, 4)}={word(0, 4)}" for _ in range(rng.randint(0, 3))]
        if rng.random() < 0.5:
            pairs.sort(key=lambda p: p.split("=", 1))
        query = "&".join(pairs)
        url = f"https://Example.COM{path}" + (f"?{query}" if query else "")
        kept = _strip_tracking(query, frozenset())  # tracking parameters go first, either way
        expected = canonicalize_url(urlunsplit(("https", "example.com", path, kept, "")))
        assert canonicalize(url) == expected, url
