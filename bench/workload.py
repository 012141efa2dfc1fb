"""The benchmark's events: Onside batches of about 350 bytes per event.

Deterministic (seeded) so every run and every floor sees the same bytes; each
batch has fresh event ids so a drain inserts every row.
"""

from __future__ import annotations

import random
import uuid
from typing import Any

import orjson

EVENTS_PER_BATCH = 1000
NAMES = ("purchase_completed", "sign_up", "add_to_cart", "Level_Up", "ad_click")
CURRENCIES = ("USD", "EUR", "GBP", "JPY")


def make_event(rng: random.Random) -> dict[str, Any]:
    """One event: the five Onside fields and a realistic payload (~350 bytes as JSON)."""
    return {
        "event_name": rng.choice(NAMES),
        "payload": {
            "currency": rng.choice(CURRENCIES),
            "amount": f"{rng.randint(1, 99999) / 100:.2f}",
            "sku": f"sku-{rng.randint(0, 10**8):08d}",
            "campaign": f"spring-sale-{rng.randint(0, 999):03d}",
            "country": "US",
            "items": rng.randint(1, 9),
            "app_version": "4.12.1",
            "first_purchase": rng.random() < 0.2,
        },
        "event_datetime": f"2026-05-05T12:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}.123Z",
        "event_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
        "installation_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
    }


def make_batches(count: int, seed: int = 0, size: int = EVENTS_PER_BATCH) -> list[bytes]:
    """``count`` request bodies of ``size`` events each, every event id distinct."""
    rng = random.Random(seed)
    return [orjson.dumps({"events": [make_event(rng) for _ in range(size)]}) for _ in range(count)]


# Replaced by the load generator with a fresh id in every request.
EVENT_ID_MARKER = "X" * 32
TAG_EVENTS = ("items_added", "purchase", "lead", "page_view", "sign_up")


def make_thrad_events(count: int, seed: int = 0) -> list[bytes]:
    """``count`` Thrad single-event bodies shaped like the Events API's reference
    example (~330 bytes), each with EVENT_ID_MARKER where its event_id goes."""
    rng = random.Random(seed)
    return [
        orjson.dumps(
            {
                "tag_id": "tag_8f3a2c",
                "event_name": rng.choice(TAG_EVENTS),
                "event_id": "evt_" + EVENT_ID_MARKER,
                "timestamp": 1748275200 + rng.randint(0, 86400),
                "click_id": f"clk_{rng.getrandbits(64):016x}",
                "session_id": f"sess_{rng.getrandbits(64):016x}",
                "user_agent": "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15",
                "params": {
                    "content_id": f"sku_{rng.randint(0, 10**6)}",
                    "quantity": rng.randint(1, 5),
                    "value": rng.randint(100, 99999) / 100,
                    "currency": rng.choice(CURRENCIES),
                },
            }
        )
        for _ in range(count)
    ]
