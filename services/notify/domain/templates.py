"""Templates ("messages configured in advance") and their sandboxed rendering.

A template is Jinja2 run in a sandbox with StrictUndefined: a variable the event does not document is
an error. Templates are checked at save time by rendering them with the event's sample data (once
with every optional variable filled, once with them all empty), so a template that cannot render is
refused when it is written, never discovered when a notice must go out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError
from jinja2.sandbox import SandboxedEnvironment

from .errors import InvalidInput
from .events import Event, event_for, sample_variables

LANGUAGES = ("it", "en")
EVENT_KEY_RE = re.compile(r"^[a-z][a-z0-9_]{1,63}$")
VARIABLE_RE = re.compile(r"^[a-z_][a-z0-9_]{0,63}$")
REDACTED = "********"
MAX_SOURCE = 20_000
MAX_OUTPUT = 200_000
MAX_SUBJECT = 250


@dataclass
class Template:
    event_key: str
    language: str
    subject: str
    body_text: str
    body_html: str = ""
    description: str = ""
    built_in: bool = False
    version: int = 1
    created_at: datetime | None = None
    updated_at: datetime | None = None

    @property
    def etag(self) -> str:
        return f'W/"{self.event_key}.{self.language}.{self.version}"'


@dataclass(frozen=True)
class Rendered:
    subject: str
    body_text: str
    body_html: str = ""


@dataclass
class RenderedPair:
    """What is sent, and the redacted copy kept in the history."""

    delivered: Rendered
    redacted: Rendered
    has_secrets: bool = False
    variables: dict[str, str] = field(default_factory=dict)


def validate_event_key(key: str, field_name: str = "event_key") -> str:
    key = (key or "").strip()
    if not EVENT_KEY_RE.match(key):
        raise InvalidInput(
            "must be 2-64 characters: lowercase letters, digits and underscores, starting with a letter",
            field=field_name,
        )
    return key


def validate_language(language: str, field_name: str = "language") -> str:
    language = (language or "").strip().lower()
    if language not in LANGUAGES:
        raise InvalidInput(f"must be one of {', '.join(LANGUAGES)}", field=field_name)
    return language


class Renderer:
    """Sandboxed Jinja2 environments: plain text for subject/body, autoescaping for HTML."""

    def __init__(self) -> None:
        self._text = SandboxedEnvironment(
            undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True
        )
        self._html = SandboxedEnvironment(
            undefined=StrictUndefined, autoescape=True, keep_trailing_newline=True
        )
        self._cache: dict[tuple[str, bool], Any] = {}

    def _compiled(self, source: str, html: bool) -> Any:
        """Compiling is the slow part of rendering: keep the compiled templates, keyed by their text."""
        key = (source, html)
        found = self._cache.get(key)
        if found is None:
            found = (self._html if html else self._text).from_string(source)
            if len(self._cache) >= 512:
                self._cache.clear()
            self._cache[key] = found
        return found

    def _render_one(self, source: str, variables: Mapping[str, str], *, html: bool, field_name: str) -> str:
        try:
            out = self._compiled(source, html).render(**variables)
        except TemplateSyntaxError as exc:
            raise InvalidInput(f"line {exc.lineno}: {exc.message}", field=field_name) from None
        except TemplateError as exc:
            raise InvalidInput(f"does not render: {exc}", field=field_name) from None
        except Exception as exc:  # sandbox violations, filter errors on sample data, ...
            raise InvalidInput(f"does not render: {type(exc).__name__}: {exc}", field=field_name) from None
        if len(out) > MAX_OUTPUT:
            raise InvalidInput(f"renders to more than {MAX_OUTPUT} characters", field=field_name)
        return out

    def render(self, template: Template, variables: Mapping[str, str], prefix: str = "template") -> Rendered:
        subject = self._render_one(template.subject, variables, html=False, field_name=f"{prefix}.subject")
        subject = " ".join(subject.split())  # one header line: no CR/LF injection
        if not subject:
            raise InvalidInput("renders to an empty subject", field=f"{prefix}.subject")
        if len(subject) > MAX_SUBJECT:
            subject = subject[: MAX_SUBJECT - 1] + "…"
        text = self._render_one(template.body_text, variables, html=False, field_name=f"{prefix}.body_text")
        html = ""
        if template.body_html.strip():
            html = self._render_one(
                template.body_html, variables, html=True, field_name=f"{prefix}.body_html"
            )
        return Rendered(subject=subject, body_text=text, body_html=html)

    def check(self, template: Template, prefix: str = "template") -> Rendered:
        """Refuse a template that cannot render with the event's sample data. Returns the preview."""
        check_template_fields(template, prefix)
        event = event_for(template.event_key)
        full = sample_variables(event)
        sparse = {name: (value if _required(event, name) else "") for name, value in full.items()}
        self.render(template, sparse, prefix)
        return self.render(template, full, prefix)


def _required(event: Event, name: str) -> bool:
    var = event.variable(name)
    return bool(var and var.always_present)


def check_template_fields(template: Template, prefix: str = "template") -> None:
    validate_event_key(template.event_key, f"{prefix}.event_key")
    validate_language(template.language, f"{prefix}.language")
    if not template.subject.strip():
        raise InvalidInput("is required", field=f"{prefix}.subject")
    if not template.body_text.strip():
        raise InvalidInput("is required", field=f"{prefix}.body_text")
    for name in ("subject", "body_text", "body_html", "description"):
        if len(getattr(template, name)) > MAX_SOURCE:
            raise InvalidInput(f"is longer than {MAX_SOURCE} characters", field=f"{prefix}.{name}")


def prepare_variables(
    event: Event,
    given: Mapping[str, str],
    secrets: Mapping[str, str],
    common: Mapping[str, str],
) -> tuple[dict[str, str], dict[str, str]]:
    """The variables to render with, for delivery and for the redacted history copy.

    Documented variables the sender left out are empty strings (templates test them with
    {% if %}); those the event always carries are required. A documented secret passed in the
    clear is refused, so a password never lands in the history by mistake.
    """
    for name in given:
        if not VARIABLE_RE.match(name):
            raise InvalidInput("variable names are lowercase identifiers", field=f"variables[{name}]")
        var = event.variable(name)
        if var is not None and var.secret:
            raise InvalidInput(
                f"'{name}' is a secret: pass it in secret_variables", field=f"variables[{name}]"
            )
    for name in secrets:
        if not VARIABLE_RE.match(name):
            raise InvalidInput("variable names are lowercase identifiers", field=f"secret_variables[{name}]")
    values: dict[str, str] = {v.name: "" for v in event.all_variables()}
    values.update({k: str(v) for k, v in given.items()})
    values.update(common)
    for var in event.variables:  # the common ones are filled by notify itself
        if var.always_present and not values.get(var.name) and not secrets.get(var.name):
            where = "secret_variables" if var.secret else "variables"
            raise InvalidInput(
                f"the '{event.key}' template needs '{var.name}' ({var.description})",
                field=f"{where}[{var.name}]",
            )
    delivered = dict(values)
    delivered.update(secrets)
    redacted = dict(values)
    redacted.update({name: REDACTED for name in secrets})
    return delivered, redacted


def render_pair(
    renderer: Renderer,
    template: Template,
    delivered: Mapping[str, str],
    redacted: Mapping[str, str],
    has_secrets: bool,
) -> RenderedPair:
    out = renderer.render(template, delivered)
    copy = renderer.render(template, redacted) if has_secrets else out
    if has_secrets:
        copy = scrub(copy, [v for k, v in delivered.items() if redacted.get(k) == REDACTED])
    return RenderedPair(delivered=out, redacted=copy, has_secrets=has_secrets, variables=dict(redacted))


def scrub(rendered: Rendered, secret_values: list[str]) -> Rendered:
    """Belt and braces: no secret value survives in the copy, however the template used it."""

    def clean(text: str) -> str:
        for value in secret_values:
            if len(value) >= 4:
                text = text.replace(value, REDACTED)
        return text

    return Rendered(clean(rendered.subject), clean(rendered.body_text), clean(rendered.body_html))
