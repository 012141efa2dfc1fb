"""Event-name normalization, shared by the endpoint's check and the worker."""

from __future__ import annotations

import unicodedata


def normalize_event_name(name: str) -> str:
    """Trim, NFKC, casefold: ``Purchase_Completed`` -> ``purchase_completed``.

    Casefolding can leave a string that NFKC would change again, and NFKC can
    turn a character into spaces at the edges, so the steps repeat until
    nothing changes: normalizing a normalized name is a no-op.
    """
    for _ in range(4):
        normalized = unicodedata.normalize("NFKC", name).casefold().strip()
        if normalized == name:
            break
        name = normalized
    return name
