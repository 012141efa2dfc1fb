from hypothesis import given
from hypothesis import strategies as st

from app.onside.names import normalize_event_name


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
