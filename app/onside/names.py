"""Event-name normalization, shared by the endpoint's check and the worker."""

from __future__ import annotations

import unicodedata

# Every character that normalizes to nothing (Python's whitespace, which is
# not JSON Schema's \s: it has U+001C-U+001F and U+0085, not U+FEFF): a
# name made only of these is empty. The OpenAPI document's pattern is built
# from it; tests/test_names.py checks it against every code point.
BLANK_CHARACTERS = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680"
    + "".join(chr(c) for c in range(0x2000, 0x200B))
    + "\u2028\u2029\u202f\u205f\u3000"
)


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
