"""Message templates: Jinja2 files per event type, medium and locale, kept in the repo.

`templates/<event type>/<medium>/<locale>.<part>`: `subject.txt` (an email's subject, a
push's or inbox entry's title), `txt` (the text), `html` (an email's HTML part, autoescaped:
data never becomes markup). A missing variable fails the render instead of sending a blank.
An SMS is cut to two segments, a push body to the payload limit.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import (
    Environment,
    FileSystemLoader,
    StrictUndefined,
    TemplateNotFound,
    select_autoescape,
)

from domains.errors import InvalidInput
from domains.notifications.models import Medium
from domains.notifications.push import fit_push
from domains.notifications.rules import RULES
from domains.notifications.sms import fit_sms

TEMPLATES_DIR = Path(__file__).parent / "templates"
LOCALES = ("ru", "en")
DEFAULT_LOCALE = "ru"

# The parts each medium's message has.
_PARTS: dict[Medium, tuple[str, ...]] = {
    Medium.EMAIL: ("subject.txt", "txt", "html"),
    Medium.SMS: ("txt",),
    Medium.PUSH: ("subject.txt", "txt"),
    Medium.IN_APP: ("subject.txt", "txt"),
}


@dataclass(frozen=True, slots=True)
class Rendered:
    subject: str  # '' for an SMS
    text: str
    html: str | None = None


def locale_of(requested: str | None) -> str:
    """The locale we have templates in: the requested language (`en-US` is `en`), else ru."""
    language = (requested or "").split("-", 1)[0].split("_", 1)[0].lower()
    return language if language in LOCALES else DEFAULT_LOCALE


class Templates:
    def __init__(self, root: Path = TEMPLATES_DIR) -> None:
        self._env = Environment(
            loader=FileSystemLoader(root),
            autoescape=select_autoescape(enabled_extensions=("html",), default=False),
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )

    def render(
        self, event_type: str, medium: Medium, locale: str, context: dict[str, Any]
    ) -> Rendered:
        """Raises InvalidInput when the event type has no template on the medium, or the
        context lacks what it uses."""
        parts: dict[str, str] = {}
        for part in _PARTS[medium]:
            name = f"{event_type}/{medium.value}/{locale_of(locale)}.{part}"
            try:
                template = self._env.get_template(name)
            except TemplateNotFound:
                raise InvalidInput(f"no {medium.value} template for {event_type}") from None
            try:
                parts[part] = template.render(context).strip()
            except Exception as error:  # StrictUndefined, a bad filter argument
                raise InvalidInput(f"template {name}: {error}") from error
        text = parts["txt"]
        if medium is Medium.SMS:
            text = fit_sms(text)
        elif medium is Medium.PUSH:
            text = fit_push(parts["subject.txt"], text, push_data(event_type, context))
        return Rendered(parts.get("subject.txt", ""), text, parts.get("html"))

    def missing(self) -> list[str]:
        """Templates the rules need and the repository lacks (a test keeps this empty)."""
        root = Path(str(self._env.loader.searchpath[0]))  # type: ignore[union-attr]
        return [
            f"{event_type}/{medium.value}/{locale}.{part}"
            for event_type, rule in RULES.items()
            for medium in rule.media
            for locale in LOCALES
            for part in _PARTS[medium]
            if not (root / event_type / medium.value / f"{locale}.{part}").is_file()
        ]


def push_data(event_type: str, context: dict[str, Any]) -> dict[str, str]:
    """What the app gets beside the text, to open the right screen: the event type and the
    ids the event names."""
    data = {"type": event_type}
    for key in ("invoice_id", "payment_id", "ticket_id"):
        if context.get(key) is not None:
            data[key] = str(context[key])
    return data
