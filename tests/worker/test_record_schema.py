import json
import re

import jsonschema
import pytest

from tests.conftest import REPO, article_html
from worker.pipeline.clean import Cleaner
from worker.pipeline.enrich import Enricher
from worker.pipeline.extract import Extractor
from worker.record import SCHEMA_VERSION, record_schema
from worker.runner import Job, build_record


@pytest.fixture(scope="module")
def record():
    url = "https://www.example.com/news/story-7"
    doc = Cleaner().clean(Extractor().extract(article_html(7), url))
    job = Job(url=url, id="c" * 32, token="t", batch="b", source="api")
    return build_record(
        job, doc, final_url=url, status=200, fetched_at="2026-03-30T10:00:00Z", enricher=Enricher()
    )


def test_current_schema_is_version_3():
    """record_schema() is the v3 schema, and records say schema_version 3."""
    assert SCHEMA_VERSION == 3
    assert record_schema()["properties"]["schema_version"] == {"const": 3}


def test_v1_and_v2_schemas_are_still_shipped():
    """The v1 and v2 schemas stay in the package for records written before."""
    assert record_schema(1)["properties"]["schema_version"] == {"const": 1}
    assert record_schema(2)["properties"]["schema_version"] == {"const": 2}


def test_pipeline_record_validates_against_v3(record):
    """A record built by the real extract, clean and enrich stages validates against schema v3."""
    jsonschema.validate(record, record_schema())


def test_authors_is_a_list_and_author_its_names_joined(record):
    """v3 records carry ``authors`` (person names) and ``author`` as those names joined by '; '."""
    assert isinstance(record["authors"], list)
    assert record["author"] == ("; ".join(record["authors"]) or None)


def test_v2_record_does_not_validate_as_v3(record):
    """A v2 record (no ``authors``, schema_version 2) is rejected by the v3 schema and accepted by v2's."""
    v2 = {k: v for k, v in record.items() if k != "authors"} | {"schema_version": 2}
    jsonschema.validate(v2, record_schema(2))
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(v2, record_schema())


def test_every_v3_field_is_required(record):
    """Every field the schema describes is required, so consumers never meet a missing key."""
    schema = record_schema()
    assert set(schema["required"]) == set(schema["properties"])
    assert set(record) == set(schema["properties"])


def test_v1_record_does_not_validate_as_current():
    """A v1 record lacks the later fields and is rejected by the current schema."""
    v1 = {"schema_version": 1, "id": "c" * 32, "url": "https://a.example/", "text": "x"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(v1, record_schema())


def test_readme_documents_every_field_with_an_example():
    """The README's record section shows a full example record and names every v3 field."""
    readme = (REPO / "README.md").read_text()
    section = readme.split("## The record", 1)[1].split("\n## ", 1)[0]
    example = json.loads(re.search(r"```json\n(.*?)```", section, re.S).group(1))
    jsonschema.validate(example, record_schema())
    for name in record_schema()["properties"]:
        assert f"`{name}`" in section, name
