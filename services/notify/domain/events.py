"""The events a template can be written for, and the variables each one documents."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Variable:
    name: str
    description: str
    example: str
    always_present: bool = False  # senders of this event must provide it
    secret: bool = False  # passed in secret_variables, never stored


@dataclass(frozen=True)
class Event:
    key: str
    description: str
    variables: tuple[Variable, ...]
    built_in: bool = True

    def variable(self, name: str) -> Variable | None:
        return next((v for v in self.all_variables() if v.name == name), None)

    def all_variables(self) -> tuple[Variable, ...]:
        own = {v.name for v in self.variables}
        return tuple(v for v in COMMON_VARIABLES if v.name not in own) + self.variables


# Filled in by notify itself from the patron's contact and the settings, for every event.
COMMON_VARIABLES: tuple[Variable, ...] = (
    Variable("patron_name", "The patron's name as displayed", "Maria Rossi", always_present=True),
    Variable("patron_card", "The patron's card barcode (empty until enrolled)", "0012345678"),
    Variable(
        "patron_email", "The address the message goes to", "maria.rossi@example.org", always_present=True
    ),
    Variable("library_name", "The library's name (setting)", "Biblioteca civica", always_present=True),
    Variable("today", "Today's date, YYYY-MM-DD", "2026-03-14", always_present=True),
    Variable("message", "The operator's own text added to the template (may be empty)", "Buona lettura!"),
)

_TITLE = Variable("title", "The document's title", "Il nome della rosa", always_present=True)
_TITLE_OPT = Variable("title", "The document's title (may be empty)", "Il nome della rosa")
_AUTHOR = Variable("author", "The document's author (may be empty)", "Umberto Eco")
_BARCODE = Variable("item_barcode", "The copy's barcode (may be empty)", "LIB0004711")
_BRANCH = Variable("pickup_branch", "Where to collect it", "Sede centrale")
_PERIOD = Variable("pickup_period_days", "How many days the item is kept once the patron is told", "7")
_DEADLINE = Variable("pickup_deadline", "Last day to collect it, YYYY-MM-DD (may be empty)", "2026-03-21")

EVENTS: tuple[Event, ...] = (
    Event(
        "credentials",
        "P5/P7: the temporary username and password for the first log-in from home (sent by patrons).",
        (
            Variable("username", "The temporary username", "mrossi71", always_present=True),
            Variable(
                "password", "The temporary password (secret)", "Xk7-pq2-Lm9", always_present=True, secret=True
            ),
            Variable("expires_on", "Last day the temporary password works, YYYY-MM-DD", "2026-03-28"),
            Variable("login_url", "Where to log in", "https://opac.example.org/login"),
        ),
    ),
    Event(
        "request_notice",
        "R7: the one-shot notice about a web reservation request (sent by requests, from the inbox).",
        (
            _TITLE_OPT,
            _AUTHOR,
            _BARCODE,
            Variable("request_date", "When the patron made the request, YYYY-MM-DD", "2026-03-12"),
            Variable("request_id", "The request's id", "3f6c2a4e-0d1b-4c1e-9d7a-1b2c3d4e5f60"),
        ),
    ),
    Event(
        "request_cut",
        "R6: the web request was rejected (cut), with the reason (sent by requests).",
        (
            _TITLE_OPT,
            _AUTHOR,
            _BARCODE,
            Variable("request_date", "When the patron made the request, YYYY-MM-DD", "2026-03-12"),
            Variable("reason", "Why it was rejected", "Il documento è in consultazione"),
        ),
    ),
    Event(
        "reservation_ready",
        "V1: the reserved item was set aside and waits for the patron (sent by reservations). "
        "Its delivery starts the pickup clock.",
        (_TITLE, _AUTHOR, _BARCODE, _BRANCH, _PERIOD, _DEADLINE),
    ),
    Event(
        "item_back_from_loan",
        "V4: the reserved item came back from loan and is set aside (sent by reservations). "
        "Its delivery starts the pickup clock.",
        (_TITLE, _AUTHOR, _BARCODE, _BRANCH, _PERIOD, _DEADLINE),
    ),
    Event(
        "pickup_reminder",
        "The pickup deadline is near (sent by reservations).",
        (
            _TITLE,
            _AUTHOR,
            _BARCODE,
            _BRANCH,
            Variable(
                "pickup_deadline", "Last day to collect it, YYYY-MM-DD", "2026-03-21", always_present=True
            ),
        ),
    ),
    Event(
        "reservation_expired",
        "V2: the item was not collected in time and the reservation expired (sent by reservations).",
        (
            _TITLE,
            _AUTHOR,
            _BARCODE,
            _BRANCH,
            Variable("expired_on", "The day it expired, YYYY-MM-DD", "2026-03-22"),
        ),
    ),
    Event(
        "free_message",
        "N1: a message written by the operator, wrapped in the library's letterhead.",
        (
            Variable(
                "message", "The operator's text", "La biblioteca resterà chiusa lunedì.", always_present=True
            ),
        ),
    ),
)

_BY_KEY = {e.key: e for e in EVENTS}
BUILT_IN_KEYS = frozenset(_BY_KEY)


def event_for(key: str) -> Event:
    """The documented event, or a custom one (admin-defined key) with only the common variables."""
    found = _BY_KEY.get(key)
    if found is not None:
        return found
    return Event(
        key,
        "Custom event defined by the library (its templates see the common variables).",
        (),
        built_in=False,
    )


def sample_variables(event: Event) -> dict[str, str]:
    return {v.name: v.example for v in event.all_variables()}
