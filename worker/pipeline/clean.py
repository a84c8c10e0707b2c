"""Clean stage: deterministic per-document removal of repeated paragraphs and page furniture."""

from __future__ import annotations

import dataclasses
import re

from worker.pipeline.extract import Extracted

_NON_WORD = re.compile(r"\W+")


def _key(line: str) -> str:
    return _NON_WORD.sub(" ", line.casefold()).strip()


class Cleaner:
    """Returns a cleaned copy of an ``Extracted`` record; the same input always gives the same output."""

    def __init__(self, **options) -> None:
        self.options = options

    def clean(self, doc: Extracted) -> Extracted:
        """Drop repeated paragraphs and a first line that repeats the title."""
        seen: set[str] = set()
        out: list[str] = []
        title_key = _key(doc.title or "")
        for line in doc.text.split("\n"):
            line = " ".join(line.split())
            key = _key(line)
            if not key or key in seen:
                continue
            if not out and title_key and key == title_key:
                continue
            seen.add(key)
            out.append(line)
        return dataclasses.replace(doc, text="\n".join(out), tags=list(doc.tags), extra=dict(doc.extra))
