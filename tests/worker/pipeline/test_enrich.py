from worker.pipeline.enrich import Enricher


def test_enrich_sets_language_word_count_and_domain():
    """English text gets language 'en', its word count, and the domain without www."""
    rec = Enricher().enrich(
        {
            "text": "The council met on Tuesday to approve the new harbour budget for next year.",
            "final_url": "https://www.example.co.uk/a",
        }
    )
    assert rec["language"] == "en" and rec["language_score"] > 0.9
    assert rec["word_count"] == 14
    assert rec["domain"] == "example.co.uk"


def test_language_of_german_text():
    """Language detection is not English-only."""
    assert (
        Enricher().language("Der Gemeinderat hat am Dienstag den neuen Haushalt für den Hafen beschlossen.")[
            0
        ]
        == "de"
    )


def test_empty_text_has_no_language():
    """No text, no language guess and zero words."""
    rec = Enricher().enrich({"text": "", "url": "https://example.com/"})
    assert (rec["language"], rec["word_count"]) == (None, 0)
