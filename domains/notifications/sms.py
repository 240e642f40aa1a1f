"""SMS length: GSM-7 or UCS-2, and how many segments a text takes.

A text all in the GSM 03.38 alphabet travels as GSM-7: 160 septets in one segment, 153 per
segment once split (the rest is the concatenation header); the extension table's characters
(`€`, `[`, `{`...) take two septets. Anything else (Cyrillic) makes the whole text UCS-2:
70 UTF-16 units alone, 67 per segment split. Our messages take at most two segments.
"""

from dataclasses import dataclass

_GSM7_BASIC = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXTENDED = frozenset("^{}\\[~]|€\f")

MAX_SEGMENTS = 2


class Encoding:
    GSM7 = "GSM-7"
    UCS2 = "UCS-2"


@dataclass(frozen=True, slots=True)
class SmsLength:
    encoding: str
    units: int  # septets (GSM-7) or UTF-16 code units (UCS-2)
    segments: int


def _units(text: str) -> tuple[str, int]:
    if all(char in _GSM7_BASIC or char in _GSM7_EXTENDED for char in text):
        return Encoding.GSM7, sum(2 if char in _GSM7_EXTENDED else 1 for char in text)
    return Encoding.UCS2, len(text.encode("utf-16-le")) // 2


def _limits(encoding: str) -> tuple[int, int]:
    """One segment's capacity alone, and each one's when split."""
    return (160, 153) if encoding == Encoding.GSM7 else (70, 67)


def sms_length(text: str) -> SmsLength:
    encoding, units = _units(text)
    single, part = _limits(encoding)
    segments = 1 if units <= single else -(-units // part)
    return SmsLength(encoding, units, segments)


def fit_sms(text: str, max_segments: int = MAX_SEGMENTS) -> str:
    """The text, cut with an ellipsis where it would take more than `max_segments`; the
    ellipsis is of the text's own encoding, so cutting never changes it."""
    if sms_length(text).segments <= max_segments:
        return text
    encoding, _ = _units(text)
    ellipsis = "..." if encoding == Encoding.GSM7 else "…"
    _, part = _limits(encoding)
    budget = part * max_segments - _units(ellipsis)[1]
    kept, used = [], 0
    for char in text:
        cost = (
            _units(char)[1] if encoding == Encoding.UCS2 else (2 if char in _GSM7_EXTENDED else 1)
        )
        if used + cost > budget:
            break
        kept.append(char)
        used += cost
    return "".join(kept).rstrip() + ellipsis
