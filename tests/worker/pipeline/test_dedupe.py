import base64
import subprocess
import sys
import threading

import pytest

from ingest_core.settings import Settings
from ingest_core.state import StateStore
from tests.conftest import REPO
from worker.pipeline import neardup
from worker.pipeline.dedupe import Deduper, content_hash, normalize_text
from worker.pipeline.store import read_records
from worker.runner import Job, Pipeline

STORY = " ".join(
    f"Sentence {i} of the harbour story: the council voted {i + 3} to {i % 4} on the new ferry plan, "
    f"said officials from ward {i * 7}, who expect the {i}th vessel to sail by spring."
    for i in range(18)
)
OTHER = " ".join(
    f"Sentence {i} of the school story: the board voted {i + 3} to {i % 4} on the new lunch plan, "
    f"said teachers from class {i * 5}, who expect the {i}th menu to change by autumn."
    for i in range(18)
)
A, B, C = "a" * 32, "b" * 32, "c" * 32


def exact_jaccard(x: str, y: str) -> float:
    sx, sy = set(neardup.shingle_hashes(x).tolist()), set(neardup.shingle_hashes(y).tolist())
    return len(sx & sy) / len(sx | sy)


@pytest.fixture
def state(redis_client):
    return StateStore(redis_client, prefix="dd")


def test_normalization_folds_case_punctuation_and_space():
    """Texts differing only in case, punctuation and white space have one hash."""
    assert normalize_text("Hello,  World!\n") == "hello world"
    assert content_hash("The Cat sat.") == content_hash("the  cat, SAT")
    assert content_hash("the cat sat") != content_hash("the dog sat")


def test_second_document_with_same_text_is_duplicate_of_first(state):
    """The same normalized text under a second id is a same_text duplicate of the first id."""
    d = Deduper(state)
    assert d.check(A, STORY).duplicate_of is None
    result = d.check(B, STORY.upper())
    assert (result.duplicate_of, result.similarity, result.reason) == (A, 1.0, "same_text")


def test_redelivered_document_is_not_its_own_duplicate(state):
    """Checking the same id twice (re-delivery) does not make it a duplicate."""
    d = Deduper(state)
    d.check(A, STORY)
    assert d.check(A, STORY).duplicate_of is None


def test_lightly_edited_copy_is_near_duplicate_with_its_similarity(state):
    """A copy with a changed word and an added line is a near_duplicate of the first, similarity = Jaccard."""
    edited = STORY.replace("ferry plan", "ferry scheme", 1) + " Advertisement. Read more from the Herald."
    d = Deduper(state)
    d.check(A, STORY)
    result = d.check(B, edited)
    assert (result.duplicate_of, result.reason) == (A, "near_duplicate")
    assert result.similarity == pytest.approx(exact_jaccard(STORY, edited), abs=0.001)
    assert 0.8 <= result.similarity < 1


def test_different_story_on_same_template_is_not_a_duplicate(state):
    """A story sharing sentence templates but not facts is canonical on its own."""
    d = Deduper(state)
    d.check(A, STORY)
    assert d.check(B, OTHER).duplicate_of is None


def test_truncated_copy_below_threshold_is_not_a_duplicate(state):
    """The first half of a story (Jaccard ~0.5) is not a near-duplicate of it."""
    d = Deduper(state)
    d.check(A, STORY)
    assert d.check(B, STORY[: len(STORY) // 2]).duplicate_of is None


def test_zero_threshold_checks_exact_copies_only(state):
    """With threshold 0 a near-identical text is canonical and no near-duplicate state is written."""
    d = Deduper(state, threshold=0)
    d.check(A, STORY)
    assert d.check(B, STORY + " One more line.").duplicate_of is None
    assert not state.r.exists(state.key("nd", "bands"))


def test_duplicates_point_at_the_canonical_document_not_at_another_duplicate(state):
    """A third copy is a duplicate of the first canonical id, whichever copy it resembles most."""
    d = Deduper(state)
    d.check(A, STORY)
    d.check(B, STORY + " Advertisement.")
    assert d.check(C, STORY + " Advertisement. Share this.").duplicate_of == A


def test_concurrent_near_identical_pages_have_exactly_one_canonical(redis_url, redis_client):
    """Eight threads checking eight near-identical texts at once: one canonical, seven point at it."""
    barrier = threading.Barrier(8)
    results: dict[str, str | None] = {}

    def work(n: int) -> None:
        d = Deduper(StateStore.from_url(redis_url, prefix="dd"))
        text = STORY + f" Copy number {n} of this wire story."
        barrier.wait()
        results[f"{n:032x}"] = d.check(f"{n:032x}", text).duplicate_of

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    canonical = [i for i, owner in results.items() if owner is None]
    assert len(canonical) == 1
    assert {owner for owner in results.values() if owner is not None} == set(canonical)


def test_signature_is_the_same_in_another_process():
    """MinHash bytes do not depend on the process (no hash randomisation, fixed seeds)."""
    code = "from worker.pipeline import neardup; import sys; print(neardup.minhash(sys.argv[1]).hex())"
    out = subprocess.run(
        [sys.executable, "-c", code, STORY], capture_output=True, text=True, check=True, cwd=REPO
    ).stdout.strip()
    assert out == neardup.minhash(STORY).hex()


def test_sketch_jaccard_is_exact_for_short_texts():
    """Bottom-k sketches of texts under k shingles give the exact word 5-gram Jaccard."""
    edited = STORY.replace("council", "committee", 3)
    assert neardup.sketch_jaccard(neardup.sketch(STORY), neardup.sketch(edited)) == pytest.approx(
        exact_jaccard(STORY, edited)
    )


def test_unspaced_scripts_are_shingled_by_character(state):
    """A Japanese text with one added sentence is a near-duplicate (characters stand for words)."""
    ja = "".join(f"第{i}回の会議で、市議会は港湾計画について{i + 3}時間議論した。" for i in range(12))
    d = Deduper(state)
    d.check(A, ja)
    assert d.check(B, ja + "詳しくは公式サイトをご覧ください。").reason == "near_duplicate"


@pytest.fixture
def pipeline(redis_url, redis_client, tmp_path):
    def make(**overrides):
        s = Settings.from_env(
            {}, redis_url=redis_url, storage_url=str(tmp_path / "records"), key_prefix="dd", **overrides
        )
        return Pipeline.from_settings(s)

    made = []
    yield lambda **o: made.append(make(**o)) or made[-1]
    for p in made:
        p.store.close()


def _page(text: str) -> str:
    paras = "".join(f"<p>{s}.</p>" for s in text.split(". ") if s)
    return f"<html><head><title>Ferry plan</title></head><body><article>{paras}</article></body></html>"


def test_pipeline_ends_a_near_copy_duplicate_and_writes_nothing(pipeline, tmp_path):
    """Through process_html, a near copy ends duplicate:near_duplicate with duplicate_of, not stored."""
    p = pipeline()
    first = p.process_html(
        Job("https://a.example/1", A, "t", "b"),
        _page(STORY),
        final_url="https://a.example/1",
        status=200,
        fetched_at="2026-01-01T00:00:00Z",
    )
    second = p.process_html(
        Job("https://b.example/1", B, "t", "b"),
        _page(STORY + ". The mayor did not comment on the vote"),
        final_url="https://b.example/1",
        status=200,
        fetched_at="2026-01-01T00:00:00Z",
    )
    assert first.state == "stored"
    assert (second.state, second.reason, second.record["duplicate_of"]) == ("duplicate", "near_duplicate", A)
    p.store.close()
    assert [r["id"] for r in read_records(tmp_path / "records")] == [A]


def test_keep_duplicates_writes_the_near_copy_flagged(pipeline, tmp_path):
    """With keep_duplicates the near copy is written with duplicate_of and its similarity."""
    p = pipeline(keep_duplicates=True)
    for uid, text in ((A, STORY), (B, STORY + ". The mayor did not comment on the vote")):
        p.process_html(
            Job(f"https://x.example/{uid}", uid, "t", "b"),
            _page(text),
            final_url=f"https://x.example/{uid}",
            status=200,
            fetched_at="2026-01-01T00:00:00Z",
        )
    p.store.close()
    records = {r["id"]: r for r in read_records(tmp_path / "records")}
    assert records[A]["duplicate_of"] is None
    assert records[B]["duplicate_of"] == A and 0.8 <= records[B]["similarity"] < 1
    assert base64.b64decode(records[B]["near_dup_signature"]) == neardup.minhash(records[B]["text"])
