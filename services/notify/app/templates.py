"""Use cases on templates: admin CRUD with save-time checks, restore the shipped text, preview."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import replace

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from bibliodesk.runtime.auth import Principal
from bibliodesk.runtime.clock import Clock
from bibliodesk.runtime.errors import AlreadyExists
from services.notify.domain.defaults import all_shipped, shipped_template
from services.notify.domain.errors import Conflict, EtagMismatch, InvalidInput, NotFound
from services.notify.domain.events import BUILT_IN_KEYS, event_for, sample_variables
from services.notify.domain.templates import (
    Rendered,
    Renderer,
    Template,
    validate_event_key,
    validate_language,
)
from services.notify.store import repository as repo

EDITABLE = ("subject", "body_text", "body_html", "description")
_ETAG = re.compile(r'^W/"([a-z0-9_]+)\.([a-z]+)\.(\d+)"$')


def parse_etag(etag: str, template: Template) -> int:
    match = _ETAG.match(etag.strip())
    if not match or (match.group(1), match.group(2)) != (template.event_key, template.language):
        raise InvalidInput("is not an etag of this template", field="etag")
    return int(match.group(3))


class TemplateService:
    def __init__(self, clock: Clock, renderer: Renderer | None = None) -> None:
        self.clock = clock
        self.renderer = renderer or Renderer()

    def install_shipped(self, session: Session) -> int:
        """Adds the shipped templates that are missing (first start, or a new built-in event)."""
        added = 0
        for template in all_shipped():
            if repo.get_template(session, template.event_key, template.language) is not None:
                continue
            try:
                with session.begin_nested():
                    repo.insert_template(session, template, self.clock.now(), "bibliodesk")
                added += 1
            except IntegrityError:
                pass  # another replica installed it at the same moment
        return added

    def create(self, session: Session, template: Template, principal: Principal) -> Template:
        template = replace(
            template,
            built_in=False,
            event_key=template.event_key.strip(),
            language=template.language.strip().lower(),
        )
        self.renderer.check(template)
        if repo.get_template(session, template.event_key, template.language) is not None:
            raise AlreadyExists(
                "TEMPLATE_EXISTS",
                f"a template for '{template.event_key}' in '{template.language}' exists: update it instead",
            )
        repo.insert_template(session, template, self.clock.now(), _actor(principal))
        return self._get(session, template.event_key, template.language)

    def update(
        self, session: Session, change: Template, mask: Iterable[str], etag: str, principal: Principal
    ) -> Template:
        current = self._get(session, change.event_key, change.language, field_prefix="template.")
        if not etag.strip():
            raise InvalidInput("is required: pass the etag you last read", field="etag")
        version = parse_etag(etag, current)
        if version != current.version:
            raise EtagMismatch("the template was changed by somebody else since you read it; reload it")
        fields = list(mask) or list(EDITABLE)
        for name in fields:
            if name not in EDITABLE:
                raise InvalidInput(
                    f"'{name}' cannot be changed; editable: {', '.join(EDITABLE)}", field="update_mask"
                )
        updated = replace(current, **{name: getattr(change, name) for name in fields})
        self.renderer.check(updated)
        if not repo.update_template(session, updated, version, self.clock.now(), _actor(principal)):
            raise EtagMismatch("the template was changed by somebody else since you read it; reload it")
        return self._get(session, change.event_key, change.language)

    def delete(self, session: Session, event_key: str, language: str, etag: str) -> None:
        current = self._get(session, event_key, language)
        if current.built_in or current.event_key in BUILT_IN_KEYS:
            raise Conflict(
                f"'{event_key}' is a built-in event: its template can be edited or restored, not deleted",
                reason="TEMPLATE_BUILT_IN",
            )
        if not etag.strip():
            raise InvalidInput("is required: pass the etag you last read", field="etag")
        if parse_etag(etag, current) != current.version or not repo.delete_template(
            session, event_key, language, current.version
        ):
            raise EtagMismatch("the template was changed by somebody else since you read it; reload it")

    def restore_default(
        self, session: Session, event_key: str, language: str, principal: Principal
    ) -> Template:
        validate_event_key(event_key)
        validate_language(language)
        shipped = shipped_template(event_key, language)
        if shipped is None:
            raise NotFound(f"'{event_key}' has no shipped template", reason="NO_SHIPPED_TEMPLATE")
        current = repo.get_template(session, event_key, language)
        now = self.clock.now()
        if current is None:
            repo.insert_template(session, shipped, now, _actor(principal))
        else:
            restored = replace(
                current,
                subject=shipped.subject,
                body_text=shipped.body_text,
                body_html=shipped.body_html,
                description=shipped.description,
            )
            repo.update_template(session, restored, current.version, now, _actor(principal))
        return self._get(session, event_key, language)

    def preview(
        self,
        session: Session,
        event_key: str,
        language: str,
        draft: Template | None,
        variables: Mapping[str, str],
    ) -> Rendered:
        if draft is not None:
            template = draft
            if not template.event_key:
                template = replace(template, event_key=event_key)
            if not template.language:
                template = replace(template, language=language or "it")
            self.renderer.check(template, prefix="draft")
        else:
            template = self._get(session, event_key, language)
        values = sample_variables(event_for(template.event_key))
        values.update(variables)
        return self.renderer.render(template, values, prefix="draft" if draft is not None else "template")

    def get(self, session: Session, event_key: str, language: str) -> Template:
        return self._get(session, event_key, language)

    def _get(self, session: Session, event_key: str, language: str, field_prefix: str = "") -> Template:
        validate_event_key(event_key, f"{field_prefix}event_key")
        validate_language(language, f"{field_prefix}language")
        found = repo.get_template(session, event_key, language)
        if found is None:
            raise NotFound(f"no template for '{event_key}' in '{language}'", reason="TEMPLATE_NOT_FOUND")
        return found


def _actor(principal: Principal) -> str:
    return f"{principal.kind}:{principal.name or principal.subject}"
