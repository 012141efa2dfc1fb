"""Per-partner policies (app/policy.py): stored overrides on defaults from the
settings, set and shown by the CLI, carried by the authenticated partner."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

import orjson
import pytest
import sqlalchemy as sa
from click.testing import Result
from sqlalchemy.engine import Engine

from app.credentials.api_keys import ApiKeyStore, create_api_key
from app.credentials.auth import CredentialStore
from app.credentials.partners import NewPartner, set_policy
from app.db import partners
from app.policy import POLICY_FIELDS, UNSET, PartnerPolicy, parse_changes
from app.settings import SETTINGS, Settings
from tests.cli_runner import run_cli


def test_every_policy_field_is_declared_once_with_its_default() -> None:
    """PartnerPolicy's attributes and POLICY_FIELDS agree, and each default is a setting."""
    attributes = [f.name for f in dataclasses.fields(PartnerPolicy)]
    assert [spec.name for spec in POLICY_FIELDS] == attributes
    settings_attributes = {f.name for f in dataclasses.fields(Settings)}
    for spec in POLICY_FIELDS:
        assert spec.setting is None or spec.setting in settings_attributes, spec.name
        assert spec.option.startswith("--") and spec.help
        assert (spec.choices is None) != (spec.parse is None), spec.name
    # The built-in defaults are the settings' documented defaults.
    envs = {s.env for s in SETTINGS}
    assert {"INLET_UNKNOWN_EVENTS", "INLET_FUTURE_EVENTS", "INLET_TOO_OLD_EVENTS"} <= envs


def test_defaults_come_from_the_settings(settings: Settings) -> None:
    changed = settings.replace(
        unknown_events="reject", future_events="accept", max_future_seconds=5, max_age_days=7
    )
    assert PartnerPolicy.defaults(settings) == PartnerPolicy()
    assert PartnerPolicy.defaults(changed) == PartnerPolicy(
        unknown_events="reject", future="accept", max_future_seconds=5, max_age_days=7
    )


def test_stored_overrides_win_and_unreadable_ones_are_skipped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    defaults = PartnerPolicy(max_age_days=30)
    stored = {"future": "reject", "max_age_days": None, "ip_mood": "x", "too_old": "maybe"}
    with caplog.at_level(logging.WARNING, "inlet.policy"):
        policy = defaults.overlay(stored)
    assert policy == PartnerPolicy(future="reject", max_age_days=None)
    assert "ip_mood" in caplog.text and "too_old" in caplog.text


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"future": "maybe"}, "--future must be one of accept, clamp, reject"),
        ({"unknown_events": "ignore"}, "--unknown-events must be one of accept, warn, reject"),
        ({"too_old": ""}, "--too-old must be one of"),
        ({"max_future_seconds": "-5"}, "--max-future-seconds: must be a whole number"),
        ({"max_future_seconds": "soon"}, "--max-future-seconds: invalid literal"),
        ({"max_age_days": "0"}, "--max-age-days: must be a positive whole number"),
    ],
)
def test_an_unknown_policy_value_is_refused(given: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_changes(given)


def test_parse_changes_sets_unsets_and_skips() -> None:
    assert parse_changes(
        {"future": "REJECT", "too_old": None, "max_age_days": "none", "unknown_events": "default"}
    ) == {"future": "reject", "max_age_days": None, "unknown_events": UNSET}


def test_partners_set_and_show(inlet: Callable[..., Result], partner: NewPartner) -> None:
    shown = orjson.loads(inlet("partners", "show", "acme", "--json").stdout)
    assert shown["policy"] == PartnerPolicy().as_json() and shown["overrides"] == {}
    assert partner.password not in inlet("partners", "show", "acme").stdout

    out = inlet(
        "partners", "set", "acme", "--unknown-events", "warn", "--future", "reject",
        "--too-old", "accept", "--max-future-seconds", "60", "--max-age-days", "30",
    ).stdout  # fmt: skip
    assert "--future" in out and "reject  (set)" in out
    shown = orjson.loads(inlet("partners", "show", "acme", "--json").stdout)
    expected = {
        "unknown_events": "warn",
        "future": "reject",
        "too_old": "accept",
        "max_future_seconds": 60,
        "max_age_days": 30,
    }
    # The privacy policies (t12b) keep their defaults: none of them was set.
    assert shown["policy"] == {**PartnerPolicy().as_json(), **expected}
    assert shown["overrides"] == expected

    # Unset one, leave the others.
    inlet("partners", "set", "acme", "--future", "default")
    shown = orjson.loads(inlet("partners", "show", "acme", "--json").stdout)
    assert shown["policy"]["future"] == "clamp" and "future" not in shown["overrides"]
    assert shown["overrides"]["unknown_events"] == "warn"


def test_no_age_limit_is_a_value_of_its_own(
    inlet: Callable[..., Result], partner: NewPartner, settings: Settings
) -> None:
    """`--max-age-days none` overrides a default limit; `default` brings it back."""
    limited = settings.replace(max_age_days=30)
    run_cli(limited, "partners", "set", "acme", "--max-age-days", "none")
    shown = orjson.loads(run_cli(limited, "partners", "show", "acme", "--json").stdout)
    assert shown["policy"]["max_age_days"] is None
    assert shown["overrides"] == {"max_age_days": None}
    run_cli(limited, "partners", "set", "acme", "--max-age-days", "default")
    shown = orjson.loads(run_cli(limited, "partners", "show", "acme", "--json").stdout)
    assert shown["policy"]["max_age_days"] == 30 and shown["overrides"] == {}


@pytest.mark.parametrize(
    ("args", "expect", "message"),
    [
        (("--future", "maybe"), 1, "--future must be one of accept, clamp, reject"),
        (("--unknown-events", "drop"), 1, "--unknown-events must be one of"),
        (("--max-age-days", "-1"), 1, "--max-age-days: must be a positive"),
        ((), 2, "nothing to set"),
    ],
)
def test_bad_policy_input_changes_nothing(
    inlet: Callable[..., Result],
    partner: NewPartner,
    engine: Engine,
    args: tuple[str, ...],
    expect: int,
    message: str,
) -> None:
    result = inlet("partners", "set", "acme", *args, expect=expect)
    assert message in result.output and "Traceback" not in result.output
    with engine.connect() as conn:
        assert conn.execute(sa.select(partners.c.policy)).scalar_one() is None


def test_an_unknown_partner_is_named(inlet: Callable[..., Result]) -> None:
    for args in (("set", "nobody", "--future", "reject"), ("show", "nobody")):
        assert "no partner named 'nobody'" in inlet("partners", *args, expect=1).output


def test_the_authenticated_partner_carries_its_policy_within_the_cache_ttl(
    engine: Engine, settings: Settings, partner: NewPartner
) -> None:
    """Both credential stores resolve the policy on the settings' defaults; a change
    is seen once the cached credential expires, and not before."""
    defaults = PartnerPolicy.defaults(settings.replace(max_age_days=9))
    key = create_api_key(engine, settings.secret_key, "acme", "k").api_key
    cached_basic = CredentialStore(engine, settings.secret_key, 3600, policy_defaults=defaults)
    cached_bearer = ApiKeyStore(engine, settings.secret_key, 3600, policy_defaults=defaults)
    fresh_basic = CredentialStore(engine, settings.secret_key, 0, policy_defaults=defaults)
    fresh_bearer = ApiKeyStore(engine, settings.secret_key, 0, policy_defaults=defaults)

    def policies() -> list[PartnerPolicy]:
        basic = [
            s.check_basic(partner.username, partner.password) for s in (cached_basic, fresh_basic)
        ]
        bearer = [s.check(key) for s in (cached_bearer, fresh_bearer)]
        found = [p for p in basic if p] + [o.partner for o in bearer if o]
        assert len(found) == 4
        return [p.policy for p in found]

    assert policies() == [PartnerPolicy(max_age_days=9)] * 4
    set_policy(engine, "acme", {"future": "reject", "max_age_days": None})
    changed = PartnerPolicy(future="reject", max_age_days=None)
    cached_basic_now, fresh_basic_now, cached_bearer_now, fresh_bearer_now = policies()
    assert fresh_basic_now == fresh_bearer_now == changed
    # Still the cached one: the change takes effect within the TTL, not at once.
    assert cached_basic_now == cached_bearer_now == PartnerPolicy(max_age_days=9)
