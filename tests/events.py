"""One event factory per format, and the reference documents' examples they start from."""

from __future__ import annotations

from typing import Any

import orjson

ONSIDE_URL = "/attribution-api/v1/events"
THRAD_URL = "/v1/api/collect"

# Onside's reference request body, verbatim.
ONSIDE_REFERENCE_BODY = """{
    "events": [
      {
        "event_name": "purchase_completed",
        "payload": {
          "currency": "USD",
          "amount": "9.99"
        },
        "event_datetime": "2026-05-05T12:00:00Z",
        "event_id": "550e8400-e29b-41d4-a716-446655440000",
        "installation_id": "550e8400-e29b-41d4-a716-446655440000"
      }
    ]
  }"""

ONSIDE_EVENT: dict[str, Any] = orjson.loads(ONSIDE_REFERENCE_BODY)["events"][0]


def onside_event(n: int = 0, **changes: Any) -> dict[str, Any]:
    """The reference event with the n-th event id; ``changes`` replace or add fields."""
    return {**ONSIDE_EVENT, "event_id": f"550e8400-e29b-41d4-a716-{n:012d}", **changes}


# Thrad's reference body, verbatim.
THRAD_REFERENCE_BODY = """{
    "tag_id":     "<YOUR_TAG_ID>",
    "event_name": "items_added",
    "event_id":   "evt_42",
    "timestamp":  1748275200,
    "click_id":   "clk_xyz",
    "session_id": "sess_abc",
    "params": {
      "content_id": "sku_123",
      "quantity": 2,
      "value": 58.00,
      "currency": "USD"
    }
  }"""

# Thrad's optional string fields, as the reference lists them: written out here
# rather than taken from app/, so that the tests check the app against the reference.
THRAD_STRING_FIELDS = (
    "tag_id",
    "event_id",
    "page_url",
    "referrer",
    "user_agent",
    "session_id",
    "client_id",
    "click_id",
    "impression_id",
    "bid_id",
    "attribution_type",
    "impression_state",
)


# User agents of end users' browsers, and a crawler's.
CHROME_WINDOWS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.6367.91 Safari/537.36"
)
SAFARI_IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
)
GOOGLEBOT = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"


def thrad_event(**changes: Any) -> dict[str, Any]:
    """A Thrad event as the endpoint queues it (server fields included); ``changes`` replace
    or add fields."""
    return {
        "event_name": "items_added",
        "tag_id": "t",
        "timestamp": 1748275200,
        "channel": "server",
        "params": {"integration": "partner_s2s"},
        "ip_address": "81.2.69.160",
        "ingest_id": "c0ffee00-0000-4000-8000-000000000000",
        "user_agent": GOOGLEBOT,
        **changes,
    }
