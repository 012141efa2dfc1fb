"""The privacy transforms on their own (app/privacy.py): IP modes, consent, PII paths."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

import pytest

from app.privacy import (
    HASH_PREFIX,
    WITHHELD,
    PrivacyPolicy,
    hash_value,
    hmac_sha256_hex,
    parse_consent_map,
    parse_ip_mode,
    parse_path,
    parse_paths,
    pii_key,
    protect_onside_events,
    protect_thrad_event,
    refused_purposes,
    says_no,
    stored_ip,
    truncate_ip,
)

KEY = pii_key(b"k" * 32, 1)
GEO = {"geo_country": "GB", "geo_region": None, "geo_city": "London", "geo_lat": 51.5, "geo_lon": 0}
EMPTY_GEO = dict.fromkeys(GEO)


def lookup(address: str | None) -> dict[str, Any]:
    """A geo lookup that knows one address: the full one, never a truncated one."""
    return GEO if address == "81.2.69.160" else EMPTY_GEO


def thrad_event(**fields: Any) -> dict[str, Any]:
    return {
        "event_name": "items_added",
        "tag_id": "t",
        "user_agent": "Mozilla/5.0",
        "click_id": "clk",
        "impression_id": "imp",
        "bid_id": "bid",
        "session_id": "sess",
        "client_id": "cli",
        "params": {"email": "a@example.com", "integration": "partner_s2s"},
        "ip_address": "81.2.69.160",
        **fields,
    }


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("81.2.69.160", "81.2.69.0"),
        ("10.1.2.3", "10.1.2.0"),
        ("2001:db8:85a3:8d3:1319:8a2e:370:7348", "2001:db8:85a3::"),
        ("::1", "::"),
        ("not an address", None),
    ],
)
def test_truncate_keeps_the_ipv4_24_or_ipv6_48_network(address: str, expected: str | None) -> None:
    assert truncate_ip(address) == expected


@pytest.mark.parametrize(
    ("mode", "expected"), [("full", "81.2.69.160"), ("truncate", "81.2.69.0"), ("drop", None)]
)
def test_each_ip_mode(mode: str, expected: str | None) -> None:
    assert stored_ip("81.2.69.160", mode) == expected
    assert stored_ip(None, mode) is None


@pytest.mark.parametrize("text", ["anonymize", "", "full,drop", "24"])
def test_an_unknown_ip_mode_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="must be one of full, truncate, drop"):
        parse_ip_mode(text)


def test_ip_modes_are_read_case_insensitively() -> None:
    assert parse_ip_mode(" Truncate ") == "truncate"


@pytest.mark.parametrize("value", [False, 0, 0.0, "false", "FALSE", "no", " off ", "denied", "0"])
def test_what_refuses_consent(value: Any) -> None:
    assert says_no(value)


@pytest.mark.parametrize("value", [True, 1, "granted", "yes", "", None, {}, [], "maybe"])
def test_what_does_not_refuse_consent(value: Any) -> None:
    assert not says_no(value)


def test_consent_flags_default_to_the_purpose_names_and_can_be_mapped() -> None:
    assert refused_purposes({"analytics": False, "advertising": True}, PrivacyPolicy()) == [
        "analytics"
    ]
    mapped = PrivacyPolicy(consent_map=parse_consent_map(["advertising=ad_storage"]))
    # The mapped purpose reads only the partner's flag, the other keeps its own name.
    assert refused_purposes({"advertising": False, "ad_storage": "granted"}, mapped) == []
    assert refused_purposes({"ad_storage": "denied"}, mapped) == ["advertising"]
    nested = PrivacyPolicy(consent_map=parse_consent_map(["analytics=purposes.measure"]))
    assert refused_purposes({"purposes": {"measure": 0}}, nested) == ["analytics"]
    assert refused_purposes(None, PrivacyPolicy()) == []
    assert refused_purposes({"gdpr": False}, PrivacyPolicy()) == []


def test_an_opt_out_flag_refuses_when_it_says_yes() -> None:
    """CCPA's "do not sell": mapped as ``!FLAG``, a true value is the refusal."""
    policy = PrivacyPolicy(consent_map=parse_consent_map(["advertising=!ccpa.do_not_sell"]))
    assert policy.consent_map == (("advertising", "!ccpa.do_not_sell"),)
    for value in (True, 1, "yes", " TRUE ", "on"):
        assert refused_purposes({"ccpa": {"do_not_sell": value}}, policy) == ["advertising"]
    for value in (False, 0, "no", None, "maybe"):
        assert refused_purposes({"ccpa": {"do_not_sell": value}}, policy) == []
    assert refused_purposes({}, policy) == []


@pytest.mark.parametrize(
    ("pair", "message"),
    [
        ("advertising", "expected PURPOSE=FLAG"),
        ("advertising=", "expected PURPOSE=FLAG"),
        ("marketing=ads", "must be one of analytics, advertising"),
        ("analytics=a..b", "not a flag name"),
        ("analytics=!", "not a flag name"),
    ],
)
def test_a_malformed_consent_mapping_is_refused(pair: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_consent_map([pair])


def test_a_refused_consent_drops_address_geo_user_agent_and_ad_ids() -> None:
    policy = PrivacyPolicy(ip_mode="full")
    out = protect_thrad_event(thrad_event(consent={"advertising": False}), policy, KEY, lookup)
    assert out["ip_address"] is None and out["geo"] == EMPTY_GEO
    for field in ("user_agent", "click_id", "impression_id", "bid_id"):
        assert field not in out, field
    # The partner's own identifiers and the consent record itself stay.
    assert out["session_id"] == "sess" and out["client_id"] == "cli"
    assert out["consent"] == {"advertising": False}


def test_consent_given_or_absent_changes_nothing_under_full() -> None:
    event = thrad_event(consent={"analytics": True, "advertising": "granted"})
    assert protect_thrad_event(event, PrivacyPolicy(), KEY, lookup) == event
    assert protect_thrad_event(thrad_event(), PrivacyPolicy(), KEY, lookup) == thrad_event()


@pytest.mark.parametrize(("mode", "stored"), [("truncate", "81.2.69.0"), ("drop", None)])
def test_geo_comes_from_the_full_address_when_it_is_not_kept(mode: str, stored: str | None) -> None:
    out = protect_thrad_event(thrad_event(), PrivacyPolicy(ip_mode=mode), KEY, lookup)
    assert out["ip_address"] == stored
    assert out["geo"] == GEO


def test_under_full_the_worker_looks_geo_up_as_before() -> None:
    """No ``geo`` in the queued event: the worker reads it from the address."""
    out = protect_thrad_event(thrad_event(), PrivacyPolicy(), KEY, lookup)
    assert "geo" not in out and out["ip_address"] == "81.2.69.160"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "email",
        "payload",
        "params.",
        ".params.email",
        "payload..email",
        "payload. email",
        "event_id",
        "payload." + ".".join(["k"] * 64),
        "payload." + "k" * 300,
    ],
)
def test_a_malformed_path_is_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_path(text)


def test_paths_are_checked_and_deduplicated() -> None:
    assert parse_paths(["payload.email", " params.user.phone ", "payload.email"]) == (
        "payload.email",
        "params.user.phone",
    )
    assert parse_path("payload.user.email") == ("payload", "user", "email")


def test_hash_is_keyed_hmac_sha256_in_hex_with_its_algorithm_named() -> None:
    digest = hmac.new(KEY, b"a@example.com", hashlib.sha256).hexdigest()
    assert hash_value(KEY, "a@example.com") == HASH_PREFIX + digest
    assert hash_value(KEY, 42) == HASH_PREFIX + hmac.new(KEY, b"42", hashlib.sha256).hexdigest()
    assert hash_value(KEY, {"b": 1, "a": 2}) == hash_value(KEY, {"a": 2, "b": 1})
    assert hash_value(KEY, None) is None


@pytest.mark.parametrize("key", [b"", b"k" * 32, b"x" * 64, b"long" * 40])
@pytest.mark.parametrize("data", [b"", b"a@example.com", "é".encode() * 1000])
def test_the_prepared_hmac_is_the_standard_one(key: bytes, data: bytes) -> None:
    assert hmac_sha256_hex(key, data) == hmac.new(key, data, hashlib.sha256).hexdigest()


def test_each_partner_has_its_own_key() -> None:
    """The same value joins within a partner, not across partners."""
    one, other = pii_key(b"k" * 32, 1), pii_key(b"k" * 32, 2)
    assert hash_value(one, "x") == hash_value(pii_key(b"k" * 32, 1), "x")
    assert hash_value(one, "x") != hash_value(other, "x")
    assert hash_value(one, "x") != hash_value(pii_key(b"j" * 32, 1), "x")


def test_pii_paths_hash_and_drop_in_nested_objects_and_arrays() -> None:
    policy = PrivacyPolicy(
        pii_hash=("payload.email", "payload.items.sku", "params.unused"),
        pii_drop=("payload.user.phone",),
    )
    payload = {
        "email": "a@example.com",
        "user": {"phone": "+44", "name": "A"},
        "items": [{"sku": "s1"}, {"qty": 2}, "loose"],
    }
    event = {"event_id": "e", "payload": payload}
    [out] = protect_onside_events([event], policy, KEY)
    assert out["payload"] == {
        "email": hash_value(KEY, "a@example.com"),
        "user": {"name": "A"},
        "items": [{"sku": hash_value(KEY, "s1")}, {"qty": 2}, "loose"],
    }
    # Copied, not changed in place: the caller's event is as it was.
    assert payload["email"] == "a@example.com" and payload["user"]["phone"] == "+44"


def test_a_path_that_matches_nothing_leaves_the_event_as_it_was() -> None:
    policy = PrivacyPolicy(pii_hash=("payload.nothing.here",), pii_drop=("payload.email.inner",))
    event = {"event_id": "e", "payload": {"email": "a@example.com", "nothing": 3}}
    assert protect_onside_events([event], policy, KEY) == [event]


def test_thrad_paths_apply_to_params_only_and_onside_paths_to_payload_only() -> None:
    policy = PrivacyPolicy(pii_hash=("params.email",), pii_drop=("payload.email",))
    out = protect_thrad_event(thrad_event(), policy, KEY, lookup)
    assert out["params"]["email"] == hash_value(KEY, "a@example.com")
    [onside] = protect_onside_events([{"payload": {"params": 1, "email": "x"}}], policy, KEY)
    assert onside["payload"] == {"params": 1}


def test_violation_messages_that_may_quote_a_pii_value_are_withheld() -> None:
    """A schema's message names the offending value: stored in warn mode, it would keep
    the value that the partner asked to hash."""
    policy = PrivacyPolicy(pii_hash=("payload.email", "payload.items.sku"))
    violations = [
        {"index": 0, "field": "payload.email", "message": '"a@example.com" is not "email"'},
        {"index": 0, "field": "payload", "message": '{"email": "a@example.com"} is bad'},
        {"index": 0, "field": "payload.items[2].sku", "message": '"s" is too short'},
        {"index": 0, "field": "payload.amount", "message": '"x" is not of type "number"'},
        {"index": 0, "field": "event_name", "message": "has no schema for this partner"},
    ]
    event = {"payload": {"email": "a@example.com"}, "violations": violations}
    [out] = protect_onside_events([event], policy, KEY)
    assert [v["message"] == WITHHELD for v in out["violations"]] == [True, True, True, False, False]
    assert [v["field"] for v in out["violations"]] == [v["field"] for v in violations]
    assert "a@example.com" not in str(out)


def test_a_violation_path_that_cannot_be_read_is_withheld() -> None:
    policy = PrivacyPolicy(pii_drop=("params.email",))
    event = thrad_event(violations=[{"field": "params[", "message": "secret"}])
    out = protect_thrad_event(event, policy, KEY, lookup)
    assert out["violations"] == [{"field": "params[", "message": WITHHELD}]
