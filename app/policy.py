"""Per-partner policies: what Inlet does with a partner's data beyond the shape check.

The shape
---------
``PartnerPolicy`` (a frozen dataclass) holds one attribute per policy. Each
attribute is declared once more, with its CLI option, its parser and its
default, as a ``PolicyField`` in ``POLICY_FIELDS``; ``tests/test_policy.py``
checks that the two lists agree.

Where it lives
--------------
In the partner's row: ``partners.policy``, one JSON object holding only the
policies an operator set for that partner (``inlet partners set``). A policy
not in it follows its default, read from ``SETTINGS`` (e.g.
``INLET_UNKNOWN_EVENTS``), so changing a default moves every partner that
never overrode it. One JSON column rather than a column per policy: a new
policy needs no migration (several colleagues add fields in parallel, and
structured ones such as a consent mapping or a list of PII paths are JSON
anyway), and "not set" stays distinguishable from "set to the default".

How it travels
--------------
The credential stores (``CredentialStore`` for Basic, ``ApiKeyStore`` for
Bearer, in ``app/credentials/``) read ``partners.policy`` in the same query
as the credential and resolve it against the defaults that ``AppState``
gives them (``PartnerPolicy.defaults(settings)``). The authenticated
``Partner`` carries it as ``partner.policy``; the endpoints hand it to the
validators (``app/onside/validate.py``, ``app/thrad/validate.py``). The
stores cache a partner for ``CREDENTIAL_CACHE_SECONDS`` (2 s): a policy
change takes effect within that, in every web process, with no restart.

A stored value that this version cannot read (written by a newer version, or
by hand) is logged and replaced by the default: a partner's requests never
fail because of its policy row.

Adding a policy
---------------
1. An attribute on ``PartnerPolicy`` with the built-in default.
2. A ``PolicyField`` in ``POLICY_FIELDS``: ``name`` (the attribute and the
   JSON key), ``option`` (the ``inlet partners set`` flag), ``help``, and
   either ``choices`` (a closed set of words) or ``parse`` (text -> value,
   raising ValueError with a message for the operator; give ``multiple=True``
   for a repeatable flag, whose values ``parse`` receives as one tuple), and
   ``setting``: the attribute of ``Settings`` that holds its default
   (declare it in ``app/settings.py`` as every setting is), or None when the
   built-in default is all there is.
3. ``inlet partners set`` and ``inlet partners show`` pick it up from
   ``POLICY_FIELDS``; read it in the validator as ``policy.<name>``.
   Stored values must be JSON (tuples are stored as lists and read back by
   ``parse``... no: by ``load``, which calls ``from_json``, see below).

For a structured value give ``from_json`` (stored JSON -> value, raising
ValueError when it can't) and ``to_json`` (value -> JSON); the defaults
pass the value through.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from app.privacy import IP_MODES, PrivacyPolicy, parse_consent_map, parse_paths

if TYPE_CHECKING:
    from app.settings import Settings

log = logging.getLogger("inlet.policy")

# What to do with an event of a name that has no schema.
UNKNOWN_EVENTS = ("accept", "warn", "reject")
# What to do with an event whose time is too far ahead or too old.
CLOCK_ACTIONS = ("accept", "clamp", "reject")
# The word that, given to a flag of `inlet partners set`, removes the override.
DEFAULT = "default"


class _Unset:
    """In ``parse_changes``' result: remove the override (None is a value)."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET = _Unset()


@dataclass(frozen=True)
class PartnerPolicy:
    """One partner's policies, resolved: what it set, else the defaults."""

    unknown_events: str = "accept"
    future: str = "clamp"
    too_old: str = "clamp"
    max_future_seconds: int = 86400
    # None: no event is too old.
    max_age_days: int | None = None
    # Privacy (app/privacy.py, docs/privacy.md).
    ip_mode: str = "full"
    consent_map: tuple[tuple[str, str], ...] = ()
    pii_hash: tuple[str, ...] = ()
    pii_drop: tuple[str, ...] = ()

    @functools.cached_property
    def privacy(self) -> PrivacyPolicy:
        """The privacy part, as the transforms of app/privacy.py take it (made once)."""
        return PrivacyPolicy(self.ip_mode, self.consent_map, self.pii_hash, self.pii_drop)

    @classmethod
    def defaults(cls, settings: Settings) -> PartnerPolicy:
        """The policy of a partner that set nothing, under these settings."""
        values = {
            f.name: getattr(settings, f.setting) for f in POLICY_FIELDS if f.setting is not None
        }
        return cls(**values)

    def overlay(self, stored: Mapping[str, Any] | None) -> PartnerPolicy:
        """These defaults with a partner's stored overrides on top.

        An unknown key or an unreadable value is logged and skipped.
        """
        if not stored:
            return self
        changes: dict[str, Any] = {}
        for key, value in stored.items():
            spec = _FIELD_BY_NAME.get(key)
            if spec is None:
                log.warning("ignoring unknown stored policy %r", key)
                continue
            try:
                changes[key] = spec.from_stored(value)
            except (ValueError, TypeError) as exc:
                log.warning("ignoring stored policy %s: %s", key, exc)
        return dataclasses.replace(self, **changes) if changes else self

    def as_json(self) -> dict[str, Any]:
        return {f.name: f.to_json(getattr(self, f.name)) for f in POLICY_FIELDS}


# The built-in defaults (the SETTINGS defaults): for code and tests without settings.
DEFAULT_POLICY = PartnerPolicy()


def _identity(value: Any) -> Any:
    return value


@dataclass(frozen=True)
class PolicyField:
    """How one policy is set from the CLI, stored, read back and defaulted."""

    name: str
    option: str
    help: str
    choices: tuple[str, ...] | None = None
    parse: Callable[[Any], Any] | None = None
    multiple: bool = False
    setting: str | None = None
    from_json: Callable[[Any], Any] = _identity
    to_json: Callable[[Any], Any] = _identity

    def parse_text(self, text: Any) -> Any:
        """An operator's value (a string, or a tuple for ``multiple``) -> the value.

        Raises ValueError naming the option and what it accepts.
        """
        if self.choices is not None:
            value = str(text).strip().lower()
            if value not in self.choices:
                raise ValueError(
                    f"{self.option} must be one of {', '.join(self.choices)} "
                    f"(or {DEFAULT}), not {text!r}"
                )
            return value
        assert self.parse is not None, f"policy {self.name} has neither choices nor parse"
        try:
            return self.parse(text)
        except ValueError as exc:
            raise ValueError(f"{self.option}: {exc}") from None

    def from_stored(self, value: Any) -> Any:
        value = self.from_json(value)
        if self.choices is not None and value not in self.choices:
            raise ValueError(f"{value!r} is not one of {', '.join(self.choices)}")
        return value


def _seconds(text: str) -> int:
    value = int(text)
    if value < 0:
        raise ValueError(f"must be a whole number of seconds, 0 or more, not {text!r}")
    return value


def _days_or_none(text: str) -> int | None:
    if str(text).strip().lower() in ("", "none", "off"):
        return None
    value = int(text)
    if value <= 0:
        raise ValueError(f"must be a positive whole number of days (or none), not {text!r}")
    return value


def _int_or_none(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{value!r} is not a whole number")
    return value


def _consent_map_from_json(value: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(value, dict):
        raise ValueError(f"{value!r} is not an object of PURPOSE: FLAG")
    return parse_consent_map(f"{purpose}={flag}" for purpose, flag in value.items())


def _paths_from_json(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise ValueError(f"{value!r} is not a list of paths")
    return parse_paths(value)


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{value!r} is not a whole number")
    return value


POLICY_FIELDS: tuple[PolicyField, ...] = (
    PolicyField(
        "unknown_events",
        "--unknown-events",
        "An event whose name has no schema: accept it, accept it flagged (warn), or "
        "refuse the request (reject).",
        choices=UNKNOWN_EVENTS,
        setting="unknown_events",
    ),
    PolicyField(
        "future",
        "--future",
        "An event dated more than max-future-seconds after its receipt: keep its time "
        "(accept), set it to the receive time keeping the original (clamp), or refuse "
        "the request (reject).",
        choices=CLOCK_ACTIONS,
        setting="future_events",
    ),
    PolicyField(
        "too_old",
        "--too-old",
        "An event dated more than max-age-days before its receipt: accept, clamp or "
        "reject, as for --future.",
        choices=CLOCK_ACTIONS,
        setting="too_old_events",
    ),
    PolicyField(
        "max_future_seconds",
        "--max-future-seconds",
        "How far ahead of its receipt an event's time may be before --future applies.",
        parse=_seconds,
        setting="max_future_seconds",
        from_json=_int,
    ),
    PolicyField(
        "max_age_days",
        "--max-age-days",
        "How old an event may be before --too-old applies; `none`: no limit.",
        parse=_days_or_none,
        setting="max_age_days",
        from_json=_int_or_none,
    ),
    PolicyField(
        "ip_mode",
        "--ip-mode",
        "The Thrad client address: stored in full, truncated to its network (IPv4 /24, "
        "IPv6 /48) or dropped, before it is queued; geo comes from the full address.",
        choices=IP_MODES,
        setting="ip_mode",
    ),
    PolicyField(
        "consent_map",
        "--consent-map",
        "PURPOSE=FLAG (repeatable): read the analytics or advertising consent from this "
        "flag of the event's consent object (a dotted path allowed; !FLAG for an "
        "opt-out flag, where yes refuses) instead of the purpose's own name.",
        parse=parse_consent_map,
        multiple=True,
        from_json=_consent_map_from_json,
        to_json=dict,
    ),
    PolicyField(
        "pii_hash",
        "--pii-hash",
        "PATH (repeatable): replace the value at payload.KEY... (Onside) or params.KEY... "
        "(Thrad) with its keyed HMAC-SHA256 before queueing.",
        parse=parse_paths,
        multiple=True,
        from_json=_paths_from_json,
        to_json=list,
    ),
    PolicyField(
        "pii_drop",
        "--pii-drop",
        "PATH (repeatable): remove the value at payload.KEY... or params.KEY... before queueing.",
        parse=parse_paths,
        multiple=True,
        from_json=_paths_from_json,
        to_json=list,
    ),
)

_FIELD_BY_NAME = {f.name: f for f in POLICY_FIELDS}


def field_named(name: str) -> PolicyField:
    return _FIELD_BY_NAME[name]


def parse_changes(given: Mapping[str, Any]) -> dict[str, Any]:
    """Operator input {field name: text} -> {field name: JSON value, or UNSET}.

    Fields given as None (the flag was not used; for a repeatable flag, an
    empty tuple) are left out; the word ``default`` as the only value removes
    the override. Raises ValueError naming the first bad option.
    """
    changes: dict[str, Any] = {}
    for name, text in given.items():
        spec = _FIELD_BY_NAME[name]
        if text is None or (spec.multiple and not text):
            continue
        words = text if isinstance(text, tuple) else (text,)
        if len(words) == 1 and str(words[0]).strip().lower() == DEFAULT:
            changes[name] = UNSET
            continue
        changes[name] = spec.to_json(spec.parse_text(text))
    return changes
