"""Templates: every rule's medium has them in every locale, HTML is autoescaped, an SMS
stays within two GSM-7 or UCS-2 segments, a push within the 4 KB payload; and the quiet
hours rule on its own."""

from datetime import UTC, datetime, time

import pytest

from domains.errors import InvalidInput
from domains.notifications.models import Category, Medium
from domains.notifications.preferences import Preferences
from domains.notifications.push import MAX_PAYLOAD_BYTES, fit_push, payload_size
from domains.notifications.rules import RULES
from domains.notifications.sms import Encoding, fit_sms, sms_length
from domains.notifications.templates import LOCALES, Templates, locale_of

OVERDUE = {"number": "2026-11-7", "amount": "1250.00", "currency": "RUB", "due_date": "2026-12-10"}


def test_every_rule_has_its_templates_in_every_locale() -> None:
    assert Templates().missing() == []


SERVICE = {"subscription_id": 5, "tariff": "Домашний 100", "address": "ул. Ленина, 1"}
TICKET = {"ticket_id": 42, "subject": "Нет интернета"}
# An event of each row as planned: its data, and what the rule's lookups add.
SAMPLES: dict[str, dict[str, object]] = {
    "payment.created": {"amount": "1250.00", "currency": "RUB", "invoice_id": 3},
    "invoice.issued": {
        **OVERDUE,
        "period_start": "2026-11-01",
        "period_end": "2026-11-30",
    },
    "invoice.overdue": OVERDUE,
    "invoice.payment_reminder": {
        "number": "2026-11-7",
        "amount_due": "780.00",
        "currency": "RUB",
        "due_date": "2026-12-10",
        "offset_days": 0,
    },
    "identity.password_reset_requested": {
        "link": "https://my.kabinet.test/reset-password?token=t",
        "expires_at": "2026-12-04T20:00:00+00:00",
    },
    "identity.invitation_created": {
        "full_name": "Анна Петрова",
        "email": "anna@example.com",
        "link": "https://my.kabinet.test/reset-password?token=t",
        "expires_at": "2026-12-11T20:00:00+00:00",
    },
    "ticket.created": TICKET,
    "ticket.message_added": {**TICKET, "author_kind": "operator", "internal": False},
    "ticket.status_changed": {**TICKET, "new_status": "resolved"},
    "subscription.suspended": {**SERVICE, "reason": "promise_expired"},
    "subscription.resumed": SERVICE,
    "subscription.paused": {**SERVICE, "first_day": "2026-12-10", "until": "2026-12-24"},
    "tariff.changed": {
        **SERVICE,
        "from_tariff": "Домашний 100",
        "to_tariff": "Быстрый 500",
        "effective_from": "2027-01-01",
        "scheduled": True,
    },
}


@pytest.mark.parametrize(
    ("event_type", "medium"),
    [(event_type, medium) for event_type, rule in RULES.items() for medium in sorted(rule.media)],
)
def test_every_rule_renders_in_russian_and_english(event_type: str, medium: Medium) -> None:
    rendered = [
        Templates().render(event_type, medium, locale, dict(SAMPLES[event_type]))
        for locale in LOCALES
    ]
    for message in rendered:
        assert message.text
        assert bool(message.subject) is (medium is not Medium.SMS)
        assert (message.html is not None) is (medium is Medium.EMAIL)
    ru, en = rendered
    assert ru.text != en.text
    assert any("а" <= letter <= "я" for letter in ru.text.lower())


def test_a_reminder_says_whether_the_day_has_come() -> None:
    def subject(offset_days: int) -> str:
        data = {**SAMPLES["invoice.payment_reminder"], "offset_days": offset_days}
        return Templates().render("invoice.payment_reminder", Medium.EMAIL, "en", data).subject

    assert subject(-3) == "Reminder: invoice 2026-11-7 is due on 2026-12-10"
    assert subject(0) == "Invoice 2026-11-7 is due today"
    assert subject(2) == "Invoice 2026-11-7 is still unpaid"


def test_html_is_autoescaped_and_text_is_not() -> None:
    rendered = Templates().render(
        "invoice.overdue", Medium.EMAIL, "en", {**OVERDUE, "number": "<script>x</script>"}
    )
    assert "&lt;script&gt;" in (rendered.html or "")
    assert "<script>" not in (rendered.html or "")
    assert "<script>x</script>" in rendered.text
    assert rendered.subject == "Invoice <script>x</script> is overdue"


def test_a_missing_value_fails_rather_than_sending_a_blank() -> None:
    with pytest.raises(InvalidInput):
        Templates().render("invoice.overdue", Medium.SMS, "ru", {"number": "1"})


@pytest.mark.parametrize(
    ("text", "encoding", "segments"),
    [
        ("a" * 160, Encoding.GSM7, 1),
        ("a" * 161, Encoding.GSM7, 2),
        ("€" * 80, Encoding.GSM7, 1),  # the extension table: two septets each
        ("€" * 81, Encoding.GSM7, 2),
        ("я" * 70, Encoding.UCS2, 1),
        ("я" * 71, Encoding.UCS2, 2),
        ("я" * 134, Encoding.UCS2, 2),
        ("я" * 135, Encoding.UCS2, 3),
        ("😀" * 35, Encoding.UCS2, 1),  # two UTF-16 units each
    ],
)
def test_sms_length_counts_segments(text: str, encoding: str, segments: int) -> None:
    length = sms_length(text)
    assert (length.encoding, length.segments) == (encoding, segments)


@pytest.mark.parametrize("text", ["b" * 500, "ж" * 500, "{" * 400, "x" * 300 + "я"])
def test_a_long_sms_is_cut_to_two_segments_in_its_own_encoding(text: str) -> None:
    cut = fit_sms(text)
    assert sms_length(cut).segments == 2
    assert sms_length(cut).encoding == sms_length(text).encoding
    assert cut.endswith(("...", "…"))


def test_a_long_push_is_cut_within_the_payload_limit() -> None:
    data = {"type": "payment.created", "payment_id": "7"}
    body = fit_push("Платёж получен", '"ю\\' * 3000, data)
    assert payload_size("Платёж получен", body, data) <= MAX_PAYLOAD_BYTES
    assert body.endswith("…")
    assert fit_push("t", "short", data) == "short"


def test_locales_fall_back_to_russian() -> None:
    assert (locale_of("en-US"), locale_of("ru_RU"), locale_of("de"), locale_of(None)) == (
        "en",
        "ru",
        "ru",
        "ru",
    )


@pytest.mark.parametrize(
    ("medium", "category", "held"),
    [
        (Medium.SMS, Category.BILLING, True),
        (Medium.PUSH, Category.SUPPORT, True),
        (Medium.EMAIL, Category.BILLING, False),
        (Medium.IN_APP, Category.BILLING, False),
        (Medium.PUSH, Category.SECURITY, False),
    ],
)
def test_quiet_hours_hold_what_would_wake_someone(
    medium: Medium, category: Category, held: bool
) -> None:
    overnight = Preferences(time_zone="Europe/Moscow", quiet_hours=(time(22), time(8)))
    night = datetime(2026, 12, 4, 20, 0, tzinfo=UTC)  # 23:00 in Moscow
    morning = datetime(2026, 12, 5, 5, 0, tzinfo=UTC)  # 08:00 there
    assert overnight.quiet_until(category, medium, night) == (morning if held else None)


def test_quiet_hours_within_a_day_and_off() -> None:
    siesta = Preferences(time_zone="UTC", quiet_hours=(time(13), time(15)))
    assert siesta.quiet_until(
        Category.BILLING, Medium.SMS, datetime(2026, 12, 4, 14, 0, tzinfo=UTC)
    ) == datetime(2026, 12, 4, 15, 0, tzinfo=UTC)
    assert (
        siesta.quiet_until(Category.BILLING, Medium.SMS, datetime(2026, 12, 4, 15, 0, tzinfo=UTC))
        is None
    )
    never = Preferences(quiet_hours=None)
    assert (
        never.quiet_until(Category.BILLING, Medium.SMS, datetime(2026, 12, 4, 20, tzinfo=UTC))
        is None
    )
