"""Write the compose test's pages and URL list: distinct articles, exact copies, and URLs that 404.

    python3 make_pages.py DIR BASE_URL --pages N --copies C --missing M
writes DIR/pages/*.html and DIR/urls.txt, and prints the expected terminal counts as JSON.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

WORDS = (
    "harbour council ferry plan vessel night service island ward resident official spring summer debate "
    "budget school road bridge river market station library museum hospital clinic doctor nurse teacher "
    "student parent child family neighbour shop bakery farmer field harvest weather storm rain wind snow "
    "morning evening weekend holiday festival concert theatre film book author poet painter gallery "
    "engineer builder plumber driver pilot sailor captain crew passenger ticket timetable delay route "
    "mayor minister election vote party campaign poll result majority committee report inquiry review "
    "company factory worker union wage contract price cost tax rent housing flat garden park forest lake"
).split()


def article(rng: random.Random, n: int) -> str:
    paragraphs = []
    for _ in range(5):
        sentences = [" ".join(rng.choice(WORDS) for _ in range(14)).capitalize() + "." for _ in range(3)]
        paragraphs.append(f"<p>{' '.join(sentences)}</p>")
    return (
        f"<!doctype html><html lang=en><head><title>Article {n} | Test Herald</title>"
        f'<meta name="description" content="Test article {n}"></head><body>'
        f"<nav>Home News Sport</nav><article><h1>Article {n}</h1>{''.join(paragraphs)}</article>"
        "<footer>Copyright Test Herald</footer></body></html>"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dir", type=Path)
    parser.add_argument("base_url")
    parser.add_argument("--pages", type=int, default=400)
    parser.add_argument("--copies", type=int, default=10)
    parser.add_argument("--missing", type=int, default=10)
    args = parser.parse_args()
    rng = random.Random(15)
    pages = args.dir / "pages"
    pages.mkdir(parents=True, exist_ok=True)
    urls = []
    for n in range(args.pages):
        (pages / f"a{n:05d}.html").write_text(article(rng, n))
        urls.append(f"{args.base_url}/a{n:05d}.html")
    for n in range(args.copies):  # the same text as an article above, under another URL
        (pages / f"copy{n:05d}.html").write_text((pages / f"a{n:05d}.html").read_text())
        urls.append(f"{args.base_url}/copy{n:05d}.html")
    urls += [f"{args.base_url}/missing{n:05d}.html" for n in range(args.missing)]
    rng.shuffle(urls)
    (args.dir / "urls.txt").write_text("\n".join(urls) + "\n")
    print(
        json.dumps(
            {"submitted": len(urls), "stored": args.pages, "duplicate": args.copies, "failed": args.missing}
        )
    )


if __name__ == "__main__":
    main()
