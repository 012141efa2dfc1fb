"""Onside's batch API: ``POST /attribution-api/v1/events``.

bytes -> authenticated partner -> rate limit -> validated batch -> one RQ job
-> 204. Blocking work (SQL on a credential-cache miss, Redis) runs in worker
threads so one slow dependency never stalls the event loop.
"""

from __future__ import annotations

import functools
import logging
from datetime import UTC, datetime
from typing import cast

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from app.credentials.auth import Partner, parse_basic
from app.errors import Unauthorized
from app.onside.contract import QueuedOnsideEvent
from app.onside.validate import validate_batch_off_loop
from app.privacy import pii_key, protect_onside_events
from app.quality.clock import ClockGuard
from app.quality.dryrun import dry_run_response, wants_dry_run, warnings
from app.queue import Submission
from app.request.body import check_content_type, read_body
from app.request.context import request_context
from app.state import AppState

log = logging.getLogger("inlet.onside")

ORIGINAL = "original_event_datetime"
_BASIC_CHALLENGE = {"WWW-Authenticate": 'Basic realm="inlet", charset="UTF-8"'}


async def authenticate_basic(state: AppState, request: Request) -> Partner:
    credentials = parse_basic(request.headers.get("authorization"))
    if credentials is None:
        raise Unauthorized("Basic authentication is required", headers=_BASIC_CHALLENGE)
    return await state.authenticate(
        request,
        state.credentials.check_basic,
        state.credentials.check_basic_cached,
        *credentials,
        refusal=Unauthorized("Invalid credentials", headers=_BASIC_CHALLENGE),
        known=state.credentials.knows_basic,
    )


# Up to this many events, the PII paths are applied on the event loop (tens
# of microseconds); a bigger batch goes to a thread, as its validation does.
INLINE_PROTECT_EVENTS = 64


async def protect_events(
    state: AppState, partner: Partner, events: list[QueuedOnsideEvent]
) -> list[QueuedOnsideEvent]:
    """The batch with the partner's PII paths hashed or dropped (app/privacy.py)."""
    privacy = partner.policy.privacy
    if not privacy.paths("payload"):
        return events
    key = pii_key(state.settings.secret_key, partner.id)
    protect = functools.partial(protect_onside_events, events, privacy, key)  # type: ignore[arg-type]
    protected = (
        protect() if len(events) <= INLINE_PROTECT_EVENTS else await run_in_threadpool(protect)
    )
    return cast(list[QueuedOnsideEvent], protected)


async def post_events(request: Request) -> Response:
    state: AppState = request.app.state.inlet
    received_at = datetime.now(UTC)
    context = request_context(request)
    partner = await authenticate_basic(state, request)
    context.partner = partner.name
    await state.enforce_rate_limit(partner)
    dry_run = wants_dry_run(request)
    check_content_type(request)
    body = await read_body(request, state.settings.max_body_bytes, state.settings.body_timeout)
    context.body = body  # for the refusal log, should the batch be refused
    events = await validate_batch_off_loop(
        body,
        state.settings.max_batch_events,
        state.settings.max_json_containers,
        clock=ClockGuard.for_request(partner.policy, received_at),
        schemas=await state.schema_check(partner),
    )
    context.events = len(events)
    if dry_run:
        context.dry_run = True
        found = warnings(events, time_field="event_datetime", original_field=ORIGINAL)
        return dry_run_response(len(events), found)
    events = await protect_events(state, partner, events)
    await state.commit(
        Submission(
            endpoint="onside",
            partner_id=partner.id,
            partner_name=partner.name,
            events=events,
            received_at=received_at,
            request_id=context.request_id,
        )
    )
    return Response(status_code=204)
