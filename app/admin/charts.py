"""A partner's last hour, one bar a minute: one strip per kind, each on its own scale.

A linear chart shared by all kinds hides the few failures beside a big batch
(11 failed events next to 1,000 accepted are a one-pixel speck). Here each
kind has its own strip, scaled to its own busiest minute, and the strip is
labelled with that peak: the 11 failures fill their strip, and the label
says the scale.
"""

from __future__ import annotations

from app.admin.page import esc
from app.ops.stats import ACCEPTED, FAILED, REJECTED, WINDOW_MINUTES, PartnerHour

COLORS = {ACCEPTED: "#2e8540", REJECTED: "#e08e0b", FAILED: "#c0392b"}
LABELS = {
    ACCEPTED: "events accepted",
    REJECTED: "requests refused",
    FAILED: "events failed for good",
}
SLOT, BAR, HEIGHT = 4, 3, 18


def strip(kind: str, counts: list[int]) -> str:
    """One kind's 60 minutes, oldest on the left, scaled to its busiest minute."""
    peak = max(counts, default=0)
    width = WINDOW_MINUTES * SLOT
    rects = []
    for slot, count in enumerate(counts):
        if count:
            height = max(count / peak * HEIGHT, 1.0)
            rects.append(
                f'<rect x="{slot * SLOT}" y="{HEIGHT - height:.1f}" width="{BAR}" '
                f'height="{height:.1f}" fill="{COLORS[kind]}"><title>{count}</title></rect>'
            )
    total = sum(counts)
    label = f"{LABELS[kind]}: {total} in the hour" + (f", peak {peak}/min" if peak else "")
    return (
        f'<div class="strip" data-kind="{kind}">'
        f'<svg class="chart-strip" role="img" width="{width}" height="{HEIGHT}" '
        f'viewBox="0 0 {width} {HEIGHT}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{esc(label)}</title>"
        f'<rect width="{width}" height="{HEIGHT}" fill="#f4f4f4"/>{"".join(rects)}</svg>'
        f"<span>{esc(label)}</span></div>"
    )


def chart(hour: PartnerHour) -> str:
    """The three strips of one partner: accepted, refused, failed."""
    return (
        '<div class="chart">'
        + "".join(
            strip(kind, [minute[kind] for minute in hour.per_minute])
            for kind in (ACCEPTED, REJECTED, FAILED)
        )
        + "</div>"
    )
