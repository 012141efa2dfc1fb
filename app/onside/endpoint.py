"""Onside's batch API: ``POST /attribution-api/v1/events``.

bytes -> authenticated partner -> rate limit -> validated batch -> one RQ job
-> 204. Blocking work (SQL on a credential-cache miss, Redis) runs in worker
threads so one slow dependency never stalls the event loop.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from starlette.requests import Request
from starlette.responses import Response

from app.credentials.auth import Partner, parse_basic
from app.errors import Unauthorized
from app.onside.validate import validate_batch_off_loop
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
