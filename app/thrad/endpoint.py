"""Thrad's Events API: ``POST /v1/api/collect`` (and its alias ``/api/collect``).

Bearer API key -> partner -> rate limit (the same per-partner limit as the
batch endpoint) -> shape check -> server-side fields -> the partner's privacy
policy -> one RQ job -> 204. Geo and user-agent enrichment happen in the
worker, off the request path, except geo when the policy keeps less than the
full client address (looked up here, from the full one: app/privacy.py).
"""

from __future__ import annotations

import functools
import logging
from datetime import UTC, datetime
from typing import cast

from starlette.requests import Request
from starlette.responses import Response

from app.credentials.api_keys import KeyOwner
from app.credentials.auth import Partner
from app.errors import Unauthorized
from app.privacy import PrivacyPolicy, pii_key, protect_thrad_event
from app.quality.clock import ClockGuard
from app.quality.dryrun import dry_run_response, wants_dry_run, warnings
from app.queue import Submission
from app.request.body import read_body
from app.request.client import client_address, forwarded_for
from app.request.context import request_context
from app.state import AppState
from app.thrad.contract import QueuedThradEvent
from app.thrad.validate import server_fields, validate_event
from worker.enrich import geo_fields

log = logging.getLogger("inlet.thrad")

# One event; Thrad's Tag sends a few hundred bytes. 64 KiB leaves room for big params.
MAX_BODY_BYTES = 64 * 1024
_BEARER_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="inlet"'}
# The policy of a partner that keeps everything: its events go out as they are.
FULL_PRIVACY = PrivacyPolicy()


def bearer_token(header: str | None) -> str | None:
    """``Authorization: Bearer <token>`` -> token, or None."""
    if not header:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


async def authenticate_bearer(state: AppState, request: Request) -> KeyOwner:
    token = bearer_token(request.headers.get("authorization"))
    if token is None:
        # Thrad's exact bodies, so partners' error handling keeps working.
        raise Unauthorized("Missing bearer token", headers=_BEARER_CHALLENGE)
    return await state.authenticate(
        request,
        state.api_keys.check,
        state.api_keys.check_cached,
        token,
        refusal=Unauthorized("Invalid API key", headers=_BEARER_CHALLENGE),
        known=state.api_keys.knows,
    )


def protect_event(state: AppState, partner: Partner, event: QueuedThradEvent) -> QueuedThradEvent:
    """The event as the partner's privacy policy lets it be queued."""
    privacy = partner.policy.privacy
    if privacy == FULL_PRIVACY and "consent" not in event:
        return event  # the common case: nothing to do
    key = pii_key(state.settings.secret_key, partner.id) if privacy.pii_hash else b""
    geo = functools.partial(geo_fields, database=state.settings.geoip_database)
    return cast(QueuedThradEvent, protect_thrad_event(dict(event), privacy, key, geo))


async def collect(request: Request) -> Response:
    """Accept one event; 204 once it is durably queued."""
    state: AppState = request.app.state.inlet
    received_at = datetime.now(UTC)
    context = request_context(request)
    owner = await authenticate_bearer(state, request)
    partner = owner.partner
    context.partner = partner.name
    await state.enforce_rate_limit(partner)
    dry_run = wants_dry_run(request)
    # No Content-Type check, unlike the batch endpoint: a backend that posts
    # with `curl -d` (form-urlencoded) or none at all works against Thrad's
    # endpoint today and must keep working here. The body must still be JSON.
    body = await read_body(request, MAX_BODY_BYTES, state.settings.body_timeout)
    context.body = body  # for the refusal log, should the event be refused
    event = validate_event(
        body,
        ClockGuard.for_request(partner.policy, received_at),
        await state.schema_check(partner),
    )
    context.events = 1
    if dry_run:
        context.dry_run = True
        found = warnings(
            [event], time_field="timestamp", original_field="original_timestamp", indexed=False
        )
        return dry_run_response(1, found)
    peer = request.client.host if request.client else None
    queued = server_fields(
        event,
        headers=request.headers,
        ip_address=client_address(
            peer, forwarded_for(request.headers), state.settings.trusted_proxies
        ),
        partner_id=partner.id,
        api_key_id=owner.api_key_id,
        key_label=owner.label,
        received_at=received_at,
    )
    # Consent, ip_mode and PII paths, before anything is queued (app/privacy.py).
    queued = protect_event(state, partner, queued)
    await state.commit(
        Submission(
            endpoint="thrad",
            partner_id=partner.id,
            partner_name=partner.name,
            events=[queued],
            received_at=received_at,
            request_id=context.request_id,
        )
    )
    return Response(status_code=204)
