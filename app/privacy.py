"""Privacy transforms applied on the request path, before an event is queued.

Everything here is a pure function of an event and a partner's
``PrivacyPolicy``: nothing is read from the environment or the network (the
geo lookup is handed in), so each transform is tested on its own and the
endpoints only call ``protect_thrad_event`` / ``protect_onside_events``.

- **IP addresses** (Thrad): ``ip_mode`` ``full`` keeps the client's address,
  ``truncate`` keeps its network (IPv4 /24, IPv6 /48), ``drop`` keeps none.
  When the address is not kept in full, geo is looked up here, from the full
  address, and travels in the queued event (``geo``): the clear address
  never reaches Redis, the failed-job registry, the worker or a log. With
  ``full`` the worker looks geo up as before (off the request path).
- **Consent** (Thrad): two purposes, ``analytics`` and ``advertising``, each
  read from a flag of the event's ``consent`` object (by default a key of the
  purpose's own name; ``consent_map`` names the partner's flag, a dotted
  path inside ``consent`` allowed; ``!FLAG`` for an opt-out flag, where a
  yes refuses). A flag that says no (``false``, ``0``,
  ``"false"``, ``"no"``, ``"off"``, ``"denied"``) for either purpose drops
  the address, geo, ``user_agent`` (so no ua fields) and the ad ids
  (``click_id``, ``impression_id``, ``bid_id``). An absent flag, or any
  other value, is no refusal: the partner collects the consent, Inlet
  honours a "no" it is told about.
- **PII fields** (both formats): dotted paths into an Onside event's
  ``payload`` (``payload.email``) or a Thrad event's ``params``
  (``params.user.email``), whose value is replaced by its keyed hash
  (``pii_hash``) or removed (``pii_drop``). A path that matches nothing in an
  event is no error; one that is malformed is refused when it is set
  (``parse_path``).
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

IP_MODES = ("full", "truncate", "drop")
CONSENT_PURPOSES = ("analytics", "advertising")
# Where a PII path may start: the one free-form object of each format.
PATH_ROOTS = ("payload", "params")
# The network an address is cut to under ``truncate``.
IPV4_PREFIX = 24
IPV6_PREFIX = 48
# A refused consent drops these sent fields (and the address and geo).
CONSENT_DROPPED_FIELDS = ("user_agent", "click_id", "impression_id", "bid_id")
# What a flag may say to refuse (strings compared trimmed and lowercased).
REFUSALS = frozenset({"false", "no", "off", "denied", "0"})
# What an opt-out flag (mapped as ``!FLAG``) may say to refuse.
ASSERTIONS = frozenset({"true", "yes", "on", "1"})
NEGATED = "!"
# How a hashed value starts: the algorithm, so that a reader knows what it holds.
HASH_PREFIX = "hmac-sha256:"
MAX_PATH_CHARS = 256
MAX_PATH_SEGMENTS = 64

Path = tuple[str, ...]
GeoLookup = Callable[[str | None], Mapping[str, Any]]


@dataclass(frozen=True)
class PrivacyPolicy:
    """One partner's privacy settings (see the module docstring)."""

    ip_mode: str = "full"
    # (purpose, the partner's flag in ``consent``) for purposes not named as themselves.
    consent_map: tuple[tuple[str, str], ...] = ()
    pii_hash: tuple[str, ...] = ()
    pii_drop: tuple[str, ...] = ()

    def flag_for(self, purpose: str) -> str:
        return dict(self.consent_map).get(purpose, purpose)

    def paths(self, root: str) -> tuple[tuple[Path, str], ...]:
        """(path below ``root``, "hash" or "drop") for the paths that start at ``root``."""
        return _paths_below(root, self.pii_hash, self.pii_drop)


@functools.lru_cache(maxsize=1024)
def _paths_below(
    root: str, hashed: tuple[str, ...], dropped: tuple[str, ...]
) -> tuple[tuple[Path, str], ...]:
    # Parsed once per policy, not once per event.
    found = []
    for action, texts in (("hash", hashed), ("drop", dropped)):
        for text in texts:
            path = parse_path(text)
            if path[0] == root:
                found.append((path[1:], action))
    return tuple(found)


def parse_ip_mode(text: str) -> str:
    mode = str(text).strip().lower()
    if mode not in IP_MODES:
        raise ValueError(f"must be one of {', '.join(IP_MODES)}, not {text!r}")
    return mode


def parse_path(text: str) -> Path:
    """``payload.user.email`` -> ("payload", "user", "email"); ValueError if malformed.

    A path starts at ``payload`` (Onside) or ``params`` (Thrad) and names at
    least one key below it; keys are separated by dots, so a key that holds a
    dot can't be named.
    """
    if not isinstance(text, str):
        raise ValueError(f"a path must be text, not {text!r}")
    if not text or len(text) > MAX_PATH_CHARS:
        raise ValueError(f"a path must be 1 to {MAX_PATH_CHARS} characters: {text!r}")
    segments = tuple(text.split("."))
    if segments[0] not in PATH_ROOTS:
        raise ValueError(
            f"a path starts with {' or '.join(p + '.' for p in PATH_ROOTS)} "
            f"(e.g. payload.email): {text!r}"
        )
    if len(segments) < 2:
        raise ValueError(f"a path must name a key below {segments[0]}: {text!r}")
    if len(segments) > MAX_PATH_SEGMENTS:
        raise ValueError(f"a path may have at most {MAX_PATH_SEGMENTS} keys: {text!r}")
    if any(not s or s != s.strip() for s in segments):
        raise ValueError(f"a path has an empty key or a key with spaces at an end: {text!r}")
    return segments


def parse_paths(texts: Iterable[str]) -> tuple[str, ...]:
    """Each path checked, duplicates dropped, order kept."""
    return tuple(dict.fromkeys(".".join(parse_path(str(t).strip())) for t in texts))


def parse_consent_map(pairs: Iterable[str]) -> tuple[tuple[str, str], ...]:
    """``("advertising=ads",)`` -> (("advertising", "ads"),); ValueError if malformed."""
    mapping: dict[str, str] = {}
    for pair in pairs:
        purpose, sep, flag = str(pair).partition("=")
        purpose, flag = purpose.strip().lower(), flag.strip()
        if not sep or not flag:
            raise ValueError(f"expected PURPOSE=FLAG, e.g. advertising=ad_storage: {pair!r}")
        if purpose not in CONSENT_PURPOSES:
            raise ValueError(
                f"the purpose must be one of {', '.join(CONSENT_PURPOSES)}, not {purpose!r}"
            )
        name = flag[1:] if flag.startswith(NEGATED) else flag
        if len(name) > MAX_PATH_CHARS or any(not s for s in name.split(".")):
            raise ValueError(f"not a flag name (a key, or a dotted path in consent): {flag!r}")
        mapping[purpose] = flag
    return tuple(sorted(mapping.items()))


# --- IP addresses -------------------------------------------------------------


def truncate_ip(address: str) -> str | None:
    """The address's network: IPv4 /24 (``203.0.113.0``), IPv6 /48 (``2001:db8:1::``).

    Not an address: None (nothing is kept that can't be cut).
    """
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return None
    bits = parsed.max_prefixlen
    prefix = IPV4_PREFIX if bits == 32 else IPV6_PREFIX
    mask = ((1 << prefix) - 1) << (bits - prefix)
    return str(type(parsed)(int(parsed) & mask))


def stored_ip(address: str | None, mode: str) -> str | None:
    """What may be queued and stored of the client's address under ``mode``."""
    if address is None or mode == "drop":
        return None
    if mode == "truncate":
        return truncate_ip(address)
    return address


# --- Consent ------------------------------------------------------------------


def says_no(value: Any) -> bool:
    """True if a consent flag's value refuses: false, 0, or false/no/off/denied/0 as text."""
    if value is False:
        return True
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return value == 0
    if isinstance(value, str):
        return value.strip().lower() in REFUSALS
    return False


def says_yes(value: Any) -> bool:
    """True if a flag's value asserts: true, a non-zero number, or true/yes/on/1 as text."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, str):
        return value.strip().lower() in ASSERTIONS
    return False


def _refuses(consent: Mapping[str, Any], flag: str) -> bool:
    if flag.startswith(NEGATED):
        # A flag that says "opt out" (CCPA's do-not-sell): a yes refuses.
        return says_yes(_flag(consent, flag[1:]))
    return says_no(_flag(consent, flag))


def _flag(consent: Mapping[str, Any], name: str) -> Any:
    if name in consent:
        return consent[name]
    value: Any = consent
    for key in name.split("."):
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return value


def refused_purposes(consent: Any, policy: PrivacyPolicy) -> list[str]:
    """The purposes the event's ``consent`` object refuses, in CONSENT_PURPOSES order."""
    if not isinstance(consent, Mapping):
        return []
    return [p for p in CONSENT_PURPOSES if _refuses(consent, policy.flag_for(p))]


# --- PII fields ---------------------------------------------------------------


def pii_key(secret_key: bytes, partner_id: int) -> bytes:
    """The partner's own HMAC key, derived from INLET_SECRET_KEY.

    One key per partner: a value hashes the same across a partner's events
    and both its formats (joins work), but not across partners (partners
    stay isolated, and one partner's hashes can't be matched with another's).
    """
    return hmac.new(secret_key, f"inlet pii v1 partner {partner_id}".encode(), "sha256").digest()


@functools.lru_cache(maxsize=256)
def _hmac_states(key: bytes) -> tuple[Any, Any]:
    """HMAC-SHA256's inner and outer hash states for ``key`` (RFC 2104), made once.

    ``hmac.new`` builds a fresh OpenSSL HMAC context for every value: three
    times the cost of copying two prepared SHA-256 states, which is what the
    standard library's own pure-Python HMAC does. A 1,000-event batch with a
    few hashed paths is hashed on the request path. ``tests/test_privacy.py``
    checks the result against ``hmac.new``.
    """
    block = key if len(key) <= 64 else hashlib.sha256(key).digest()
    block = block.ljust(64, b"\0")
    inner = hashlib.sha256(bytes(b ^ 0x36 for b in block))
    outer = hashlib.sha256(bytes(b ^ 0x5C for b in block))
    return inner, outer


def hmac_sha256_hex(key: bytes, data: bytes) -> str:
    inner_state, outer_state = _hmac_states(key)
    inner = inner_state.copy()
    inner.update(data)
    outer = outer_state.copy()
    outer.update(inner.digest())
    return str(outer.hexdigest())


def hash_value(key: bytes, value: Any) -> Any:
    """``hmac-sha256:<64 hex>`` of a value; None stays None (nothing to hide).

    A string is hashed as its UTF-8 bytes; any other JSON value as its
    compact JSON text with sorted keys (so ``42`` hashes as ``"42"`` does not).
    """
    if value is None:
        return None
    if isinstance(value, str):
        data = value.encode("utf-8", "surrogatepass")
    else:
        data = orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    return HASH_PREFIX + hmac_sha256_hex(key, data)


def _apply(obj: Any, path: Path, action: str, key: bytes) -> tuple[Any, int]:
    """``obj`` with the path's value hashed or dropped, copied where it changed;
    and how many values the path matched. Arrays on the way are walked into,
    element by element."""
    if isinstance(obj, list):
        changed, total = [], 0
        for item in obj:
            new, count = _apply(item, path, action, key)
            changed.append(new)
            total += count
        return (changed, total) if total else (obj, 0)
    if not isinstance(obj, dict) or path[0] not in obj:
        return obj, 0
    head, rest = path[0], path[1:]
    if rest:
        new_value, count = _apply(obj[head], rest, action, key)
        if not count:
            return obj, 0
        return {**obj, head: new_value}, count
    copy = dict(obj)
    if action == "drop":
        del copy[head]
    else:
        copy[head] = hash_value(key, copy[head])
    return copy, 1


def protect_object(
    obj: dict[str, Any], paths: Iterable[tuple[Path, str]], key: bytes
) -> dict[str, Any]:
    """The free-form object with every PII path applied (no match: unchanged)."""
    for path, action in paths:
        obj, _ = _apply(obj, path, action, key)
    return obj


# --- Schema violations ----------------------------------------------------------

# One step of a violation's JSON path (app/quality/schemas.py json_path):
# ``.key``, ``[3]`` or ``["quoted key"]``.
_STEP = re.compile(r'\.([^.\[]+)|\[(\d+)\]|\[("(?:[^"\\]|\\.)*")\]')
WITHHELD = "(message withheld: the value is in a PII field of this partner)"


def _steps(field: str) -> tuple[str, ...] | None:
    """``payload.items[0]["a b"]`` -> ("payload", "items", "a b"): array indices
    dropped (a PII path walks into every element). None if it can't be read."""
    head = re.match(r"[^.\[]+", field)
    if head is None:
        return None
    steps = [head.group(0)]
    position = head.end()
    while position < len(field):
        match = _STEP.match(field, position)
        if match is None:
            return None
        key, _index, quoted = match.groups()
        if key is not None:
            steps.append(key)
        elif quoted is not None:
            steps.append(str(orjson.loads(quoted)))
        position = match.end()
    return tuple(steps)


def redact_violations(
    violations: list[dict[str, Any]], paths: Iterable[tuple[Path, str]], root: str
) -> list[dict[str, Any]]:
    """Schema violations (stored in warn mode) whose message might quote a PII
    value: the validator's message names the offending value, so a violation
    at a PII path, inside it, or at an object that holds it, keeps its field
    and loses its message. Others are kept as they are."""
    pii = [(root, *path) for path, _ in paths]
    if not pii:
        return violations
    out = []
    for violation in violations:
        steps = _steps(str(violation.get("field") or ""))
        touches = steps is None or any(
            steps[: len(path)] == path or path[: len(steps)] == steps for path in pii
        )
        out.append({**violation, "message": WITHHELD} if touches else violation)
    return out


# --- Whole events -------------------------------------------------------------


def protect_onside_events(
    events: list[dict[str, Any]], policy: PrivacyPolicy, key: bytes
) -> list[dict[str, Any]]:
    """The batch with each payload's PII paths applied (the same list when there are none)."""
    paths = policy.paths("payload")
    if not paths:
        return events
    return [_protect_onside(event, paths, key) for event in events]


def _protect_onside(
    event: dict[str, Any], paths: tuple[tuple[Path, str], ...], key: bytes
) -> dict[str, Any]:
    out = {**event, "payload": protect_object(event["payload"], paths, key)}
    if out.get("violations"):
        out["violations"] = redact_violations(out["violations"], paths, "payload")
    return out


def protect_thrad_event(
    event: dict[str, Any], policy: PrivacyPolicy, key: bytes, geo: GeoLookup
) -> dict[str, Any]:
    """A queued Thrad event with consent, ``ip_mode`` and PII paths applied.

    ``geo`` looks an address up (``worker.enrich.geo_fields`` bound to the
    database); it is called only when the address will not be queued in full.
    """
    out = dict(event)
    address = out.get("ip_address")
    if refused_purposes(out.get("consent"), policy):
        for field in CONSENT_DROPPED_FIELDS:
            out.pop(field, None)
        out["ip_address"] = None
        out["geo"] = dict(geo(None))
    elif policy.ip_mode != "full" and address is not None:
        out["geo"] = dict(geo(address))
        out["ip_address"] = stored_ip(address, policy.ip_mode)
    paths = policy.paths("params")
    if paths:
        out["params"] = protect_object(out["params"], paths, key)
        if out.get("violations"):
            out["violations"] = redact_violations(out["violations"], paths, "params")
    return out
