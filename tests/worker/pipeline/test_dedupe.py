from worker.pipeline.dedupe import Deduper, content_hash, normalize_text


class _Registry:
    def __init__(self) -> None:
        self.owners: dict[str, str] = {}

    def content_owner(self, content_hash: str, url_id: str) -> str:
        return self.owners.setdefault(content_hash, url_id)


def test_normalization_folds_case_punctuation_and_space():
    """Texts differing only in case, punctuation and white space have one hash."""
    assert normalize_text("Hello,  World!\n") == "hello world"
    assert content_hash("The Cat sat.") == content_hash("the  cat, SAT")
    assert content_hash("the cat sat") != content_hash("the dog sat")


def test_second_document_with_same_text_is_duplicate_of_first():
    """The same normalized text under a second id is a duplicate of the first id."""
    d = Deduper(_Registry())
    assert d.check("a" * 32, "Some story text.").duplicate_of is None
    result = d.check("b" * 32, "some STORY text")
    assert result.duplicate_of == "a" * 32 and result.similarity == 1.0


def test_redelivered_document_is_not_its_own_duplicate():
    """Checking the same id twice (re-delivery) does not make it a duplicate."""
    d = Deduper(_Registry())
    d.check("a" * 32, "text")
    assert d.check("a" * 32, "text").duplicate_of is None
