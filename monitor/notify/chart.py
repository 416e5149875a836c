"""The email's inline chart: each cluster's share of traffic, previous run beside this run.

Drawn with Pillow into a PNG the email references by cid. Untrusted titles only ever become pixels here.
"""

from __future__ import annotations

import io
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

from monitor.alerts import ShareBar
from monitor.notify.render import strip_bidi

WIDTH = 592
ROW = 30
TOP = 34
LABEL_W = 230
PREV_COLOR = (203, 213, 225)
NEW_COLOR = (37, 99, 235)
ALERT_COLOR = (220, 38, 38)
TEXT = (15, 23, 42)
MUTED = (100, 116, 139)


def _fit(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.ImageFont | ImageFont.FreeTypeFont,
         width: int) -> str:
    text = " ".join(text.split())
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def share_chart(bars: Sequence[ShareBar]) -> bytes:
    """A PNG of horizontal bar pairs; clusters with an alert are drawn in red."""
    font = ImageFont.load_default(13)
    small = ImageFont.load_default(11)
    height = TOP + ROW * len(bars) + 12
    img = Image.new("RGB", (WIDTH, height), "white")
    d = ImageDraw.Draw(img)
    d.text((8, 8), "Share of traffic", fill=TEXT, font=small)
    d.rectangle((LABEL_W, 10, LABEL_W + 12, 20), fill=PREV_COLOR)
    d.text((LABEL_W + 18, 8), "previous run", fill=MUTED, font=small)
    d.rectangle((LABEL_W + 100, 10, LABEL_W + 112, 20), fill=NEW_COLOR)
    d.text((LABEL_W + 118, 8), "this run", fill=MUTED, font=small)
    top = max([b.new_share for b in bars] + [b.prev_share or 0.0 for b in bars] + [0.01])
    span = WIDTH - LABEL_W - 86
    for i, b in enumerate(bars):
        y = TOP + i * ROW
        d.text((8, y + 7), _fit(d, strip_bidi(b.title), font, LABEL_W - 16), fill=TEXT, font=font)
        if b.prev_share is not None:
            d.rectangle((LABEL_W, y + 4, LABEL_W + max(1, int(span * b.prev_share / top)), y + 12), fill=PREV_COLOR)
        d.rectangle((LABEL_W, y + 14, LABEL_W + max(1, int(span * b.new_share / top)), y + 24),
                    fill=ALERT_COLOR if b.alert else NEW_COLOR)
        prev = "new" if b.prev_share is None else f"{b.prev_share * 100:.1f}%"
        d.text((WIDTH - 78, y + 7), f"{prev} > {b.new_share * 100:.1f}%", fill=MUTED, font=small)
    out = io.BytesIO()
    img.save(out, format="PNG", optimize=True)
    return out.getvalue()
