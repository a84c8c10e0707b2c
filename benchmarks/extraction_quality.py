#!/usr/bin/env python3
"""Extraction quality on both public suites: ours vs trafilatura, readability-lxml and newspaper4k.

Suites (in the shared eval folder, scored by their own scorers, imported from there, not copied):
- the ScrapingHub article-extraction-benchmark (181 pages, body text; ``score.py``);
- Mozilla Readability's test pages (130 pages, body, title, authors, date; ``score_readability.py``).

Every system runs over the same pages in the same process, page by page in turn (so machine load hits
all alike); CPU per page is the minimum over ``--repeat`` runs. "ours" is what the pipeline does before
enrichment: ``Extractor`` + ``Cleaner`` (metadata included); its CPU is compared with trafilatura's
defaults (``trafilatura.extract``, text only: the cheaper, stricter baseline). Peers' metadata columns
come from their own metadata calls, timed separately.

    PYTHONPATH=. python benchmarks/extraction_quality.py
    PYTHONPATH=. python benchmarks/extraction_quality.py --suite readability --worst 15
    PYTHONPATH=. python benchmarks/extraction_quality.py --no-peers --repeat 1   # ours only, quick
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import trafilatura

from worker.pipeline.clean import Cleaner
from worker.pipeline.decode import decode_html
from worker.pipeline.extract import Extractor

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import result  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
EVAL = REPO.parent / "shared" / "eval"
GOALS = {
    ("readability", "body_f1"): 0.975,
    ("readability", "title_loose"): 0.90,
    ("readability", "author_f1"): 0.93,
    ("readability", "date"): 0.97,
    ("scrapinghub", "body_f1"): 0.975,
}
"""Issue 11's goal rows, all on one build."""
GOAL_CPU = 1.3
"""At most this many times trafilatura's default CPU per page, same pages, one process."""

Fields = dict[str, object]
System = Callable[[str, str | None], Fields]


def load_module(path: Path, name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_suite(name: str, eval_dir: Path, limit: int | None) -> tuple[list[tuple[str, str]], dict, dict]:
    """(pages as (id, html) decoded up front, truth, urls) of one suite; decoding is never timed."""
    folder = eval_dir / ("article-extraction-benchmark" if name == "scrapinghub" else "readability-pages")
    pages = []
    for path in sorted((folder / "html").glob("*.html.gz")):
        pages.append((path.name.split(".html")[0], decode_html(gzip.open(path).read())))
    if not pages:
        raise SystemExit(f"no html/*.html.gz under {folder}")
    pages = pages[:limit] if limit else pages
    if name == "scrapinghub":
        raw = json.loads((folder / "ground-truth.json").read_text(encoding="utf8"))
        truth = {k: v.get("articleBody") or "" for k, v in raw.items()}
        urls = {k: v.get("url") or None for k, v in raw.items()}
    else:
        truth = json.loads((folder / "truth.json").read_text(encoding="utf8"))
        urls = {}
    ids = {i for i, _ in pages}
    return pages, {k: v for k, v in truth.items() if k in ids}, urls


# -- systems ----------------------------------------------------------------------------------------------


def ours() -> System:
    extractor, cleaner = Extractor(), Cleaner()

    def run(html: str, url: str | None) -> Fields:
        doc = extractor.extract(html, url)
        if doc is None:
            return {}
        doc = cleaner.clean(doc)
        return {"text": doc.text, "title": doc.title, "authors": doc.authors, "published": doc.published}

    return run


def trafilatura_text() -> System:
    # defaults, text only, no url: what the published baselines ran
    return lambda html, _url: {"text": trafilatura.extract(html) or ""}


def trafilatura_metadata() -> System:
    def run(html: str, _url: str | None) -> Fields:
        doc = trafilatura.bare_extraction(html, with_metadata=True)
        if doc is None:
            return {}
        return {"text": doc.text or "", "title": doc.title, "author": doc.author, "published": doc.date}

    return run


def readability_lxml() -> System | None:
    try:
        import lxml.html
        from readability import Document
    except ImportError:
        return None

    def run(html: str, _url: str | None) -> Fields:
        doc = Document(html)
        title = doc.short_title()
        summary = doc.summary(html_partial=True)
        if not summary.strip():
            return {"title": title}
        root = lxml.html.fromstring(summary)
        for el in root.iter("p", "div", "h1", "h2", "h3", "h4", "h5", "h6", "li", "br", "tr", "blockquote",
                            "pre", "figcaption"):  # fmt: skip
            el.tail = "\n" + (el.tail or "")
        lines = (" ".join(line.split()) for line in root.text_content().splitlines())
        return {"text": "\n".join(line for line in lines if line), "title": title}

    return run


def newspaper4k() -> System | None:
    try:
        import newspaper
    except ImportError:
        return None

    def run(html: str, url: str | None) -> Fields:
        art = newspaper.Article(url or "http://example.com/", fetch_images=False)
        art.download(input_html=html)
        art.parse()
        date = art.publish_date.isoformat() if art.publish_date else None
        return {"text": art.text or "", "title": art.title, "authors": list(art.authors), "published": date}

    return run


def run_systems(
    systems: dict[str, System], pages: list[tuple[str, str]], urls: dict, repeat: int, warmup: int
) -> tuple[dict[str, dict[str, Fields]], dict[str, list[float]]]:
    """Outputs and per-page CPU seconds (min over ``repeat`` runs) for every system."""
    for item_id, html in pages[:warmup]:
        for fn in systems.values():
            _call(fn, html, urls.get(item_id), "")
    preds: dict[str, dict[str, Fields]] = {name: {} for name in systems}
    cpu: dict[str, list[float]] = {name: [] for name in systems}
    for item_id, html in pages:
        for name, fn in systems.items():
            best = float("inf")
            for _ in range(repeat):
                c0 = time.process_time()
                out = _call(fn, html, urls.get(item_id), f"{name} on {item_id}")
                best = min(best, time.process_time() - c0)
            preds[name][item_id] = out
            cpu[name].append(best)
    return preds, cpu


def _call(fn: System, html: str, url: str | None, where: str) -> Fields:
    try:
        return fn(html, url)
    except Exception as exc:  # an error scores as an empty output
        if where:
            print(f"error: {where}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return {}


# -- report -----------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--eval", type=Path, default=EVAL, help="the shared eval folder (default: %(default)s)")
    ap.add_argument("--suite", choices=["both", "scrapinghub", "readability"], default="both")
    ap.add_argument("--limit", type=int, help="only the first N pages of each suite")
    ap.add_argument("--repeat", type=int, default=3, help="time each page N times, keep the minimum")
    ap.add_argument("--warmup", type=int, default=2, help="pages run untimed first")
    ap.add_argument("--worst", type=int, default=10, help="list our N worst readability pages by body F1")
    ap.add_argument("--no-peers", action="store_true", help="only ours and the trafilatura CPU baseline")
    ap.add_argument(
        "--save-preds", type=Path, help="write each system's outputs (JSON lines) into this folder"
    )
    args = ap.parse_args(argv)

    sh_score = load_module(args.eval / "score.py", "aeb_score")
    rd_score = load_module(args.eval / "score_readability.py", "rd_score")
    systems: dict[str, System] = {"ours": ours(), "trafilatura defaults": trafilatura_text()}
    if not args.no_peers:
        systems["trafilatura defaults, metadata on"] = trafilatura_metadata()
        for name, make in (("readability-lxml", readability_lxml), ("newspaper4k", newspaper4k)):
            fn = make()
            if fn is None:
                print(f"{name}: not installed, skipped", file=sys.stderr)
            else:
                systems[name] = fn
    suites = ["scrapinghub", "readability"] if args.suite == "both" else [args.suite]
    total_cpu: dict[str, list[float]] = {name: [] for name in systems}
    scores: dict[tuple[str, str], dict] = {}
    for suite in suites:
        pages, truth, urls = load_suite(suite, args.eval, args.limit)
        preds, cpu = run_systems(systems, pages, urls, args.repeat, args.warmup)
        for name in systems:
            total_cpu[name] += cpu[name]
            if suite == "scrapinghub":
                res, _ = sh_score.score(truth, {k: str(v.get("text") or "") for k, v in preds[name].items()},
                                        n_bootstrap=0)  # fmt: skip
                scores[(suite, name)] = {"body_f1": res["f1"], "body_precision": res["precision"],
                                         "body_recall": res["recall"]}  # fmt: skip
            else:
                scores[(suite, name)] = rd_score.score(preds[name], truth)
            if args.save_preds:
                args.save_preds.mkdir(parents=True, exist_ok=True)
                slug = "".join(c if c.isalnum() else "_" for c in name).strip("_")
                with open(args.save_preds / f"{suite}.{slug}.jsonl", "w", encoding="utf8") as f:
                    for k, v in preds[name].items():
                        f.write(json.dumps({"name": k, **v}, ensure_ascii=False) + "\n")
        print_suite(suite, len(pages), systems, scores, cpu)
        if suite == "readability" and args.worst:
            worst = sorted(scores[(suite, "ours")]["page_f1"].items(), key=lambda kv: kv[1])[: args.worst]
            print(
                f"\nour {args.worst} worst readability pages (body F1): "
                + ", ".join(f"{k} {v:.2f}" for k, v in worst)
            )
    base = statistics.mean(total_cpu["trafilatura defaults"])
    print(f"\nCPU over all {len(total_cpu['ours'])} pages (ms/page, vs trafilatura defaults text-only):")
    for name, values in total_cpu.items():
        print(f"  {name:<36} {1000 * statistics.mean(values):7.1f}  {statistics.mean(values) / base:5.2f}x")
    bench = "extraction_quality"
    for (suite, metric), goal in GOALS.items():
        if (suite, "ours") in scores:
            peers = {
                n: scores[(suite, n)].get(metric) for n in systems if n != "ours" and (suite, n) in scores
            }
            best = max((v for v in peers.values() if isinstance(v, int | float)), default=None)
            result(bench, f"{suite} {metric}, ours vs best peer", scores[(suite, "ours")][metric], best,
                   goal=goal, goal_on="ours")  # fmt: skip
    ours_ms = 1000 * statistics.mean(total_cpu["ours"])
    result(bench, "CPU ms/page, ours vs trafilatura defaults", ours_ms, 1000 * base, goal=GOAL_CPU,
           goal_on="ratio", lower_is_better=True)  # fmt: skip
    return 0


def print_suite(suite: str, n: int, systems: dict, scores: dict, cpu: dict[str, list[float]]) -> None:
    base = statistics.mean(cpu["trafilatura defaults"])
    cols = ["body_f1", "body_precision", "body_recall"]
    if suite == "readability":
        cols += ["title_loose", "author_f1", "date"]
    header = f"{'system':<36} " + " ".join(f"{c:>14}" for c in cols) + f" {'CPU ms/page':>11} {'vs traf':>7}"
    print(f"\n{suite}: {n} pages")
    print(header)
    print("-" * len(header))
    for name in systems:
        s = scores[(suite, name)]
        ms = 1000 * statistics.mean(cpu[name])
        vals = " ".join(f"{s.get(c, 0.0):>14.4f}" for c in cols)
        print(f"{name:<36} {vals} {ms:>11.1f} {statistics.mean(cpu[name]) / base:>6.2f}x")


if __name__ == "__main__":
    sys.exit(main())
