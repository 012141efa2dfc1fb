import sys

import jsonschema_rs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.onside.names import BLANK_CHARACTERS, normalize_event_name
from app.onside.openapi import ONSIDE_EVENT


def test_case_variants_land_as_one_name() -> None:
    assert normalize_event_name("Purchase_Completed") == "purchase_completed"
    assert normalize_event_name("PURCHASE_COMPLETED") == "purchase_completed"
    assert normalize_event_name("  purchase_completed\t") == "purchase_completed"


def test_compatibility_forms_fold_together() -> None:
    """NFKC: full-width letters and ligatures become their plain forms."""
    assert normalize_event_name("ＰＵＲＣＨＡＳＥ") == "purchase"
    assert normalize_event_name("ﬁnal_STRAẞE") == "final_strasse"


@given(st.text())
def test_normalizing_twice_changes_nothing(name: str) -> None:
    once = normalize_event_name(name)
    assert normalize_event_name(once) == once


def test_blank_characters_are_exactly_those_that_normalize_to_nothing() -> None:
    """The OpenAPI document's event_name pattern is built from BLANK_CHARACTERS:
    it must name every character the validator finds empty, and no other."""
    empty = {
        chr(c)
        for c in range(sys.maxunicode + 1)
        if not 0xD800 <= c <= 0xDFFF and normalize_event_name(chr(c)) == ""
    }
    assert set(BLANK_CHARACTERS) == empty


@pytest.mark.parametrize("name", ["\x1d", " \x85\u3000", "\t", "a", "\ufeff", " x "])
def test_the_documents_event_name_pattern_agrees_with_the_validator(name: str) -> None:
    pattern = ONSIDE_EVENT["properties"]["event_name"]["pattern"]
    document = jsonschema_rs.validator_for({"type": "string", "pattern": pattern})
    assert document.is_valid(name) == bool(normalize_event_name(name))
