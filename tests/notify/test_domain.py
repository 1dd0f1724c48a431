"""Pure rules of the notify service: delivery state machine, templates, variables, redaction."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.notify.domain.defaults import SHIPPED, all_shipped
from services.notify.domain.errors import Conflict, IllegalTransition, InvalidInput
from services.notify.domain.events import BUILT_IN_KEYS, event_for
from services.notify.domain.messages import (
    TRANSITIONS,
    AttemptOutcome,
    DeliveryState,
    MessageStatus,
    RetryPolicy,
    Transition,
    message_id_header,
    next_status,
)
from services.notify.domain.templates import (
    REDACTED,
    Renderer,
    Template,
    prepare_variables,
    render_pair,
)

NOW = datetime(2026, 3, 14, 9, 0, tzinfo=UTC)
POLICY = RetryPolicy(max_attempts=3, base_delay=timedelta(seconds=10), max_delay=timedelta(seconds=60))


# --- delivery state machine -------------------------------------------------------------------


def test_delivered_on_first_attempt() -> None:
    state = DeliveryState()
    assert state.record_attempt(AttemptOutcome.ok(), NOW, POLICY) is Transition.DELIVERED
    assert state.status is MessageStatus.SENT
    assert state.attempts == 1 and state.sent_at == NOW and state.last_error == ""


def test_temporary_failures_back_off_then_fail_when_budget_spent() -> None:
    state = DeliveryState()
    rng = random.Random(1)
    state.record_attempt(AttemptOutcome.temporary("421 busy"), NOW, POLICY, rng)
    assert state.status is MessageStatus.RETRYING and state.last_error == "421 busy"
    assert state.next_attempt_at is not None
    first_delay = state.next_attempt_at - NOW
    assert timedelta(seconds=8) <= first_delay <= timedelta(seconds=12)
    state.record_attempt(AttemptOutcome.temporary("connection refused"), NOW, POLICY, rng)
    assert state.next_attempt_at is not None
    assert timedelta(seconds=16) <= state.next_attempt_at - NOW <= timedelta(seconds=24)
    state.record_attempt(AttemptOutcome.temporary("connection refused"), NOW, POLICY, rng)
    assert state.status is MessageStatus.FAILED
    assert state.history[-1][2] is Transition.BUDGET_SPENT
    assert state.finished_at == NOW and state.next_attempt_at is None


def test_permanent_refusal_fails_at_once() -> None:
    state = DeliveryState()
    state.record_attempt(AttemptOutcome.refused("550 no such user"), NOW, POLICY)
    assert state.status is MessageStatus.FAILED and state.attempts == 1
    assert state.last_error == "550 no such user"


def test_backoff_is_capped() -> None:
    delay = RetryPolicy(
        base_delay=timedelta(seconds=30), max_delay=timedelta(minutes=5), jitter=0
    ).delay_after(20)
    assert delay == timedelta(minutes=5)


def test_sent_message_accepts_no_more_attempts_and_cannot_be_cancelled() -> None:
    state = DeliveryState()
    state.record_attempt(AttemptOutcome.ok(), NOW, POLICY)
    with pytest.raises(IllegalTransition):
        state.record_attempt(AttemptOutcome.ok(), NOW, POLICY)
    with pytest.raises(Conflict) as err:
        state.cancel(NOW, "changed my mind")
    assert err.value.reason == "MESSAGE_NOT_PENDING"


def test_retry_of_failed_message_resets_budget_unless_secrets_were_wiped() -> None:
    state = DeliveryState()
    state.record_attempt(AttemptOutcome.refused("550"), NOW, POLICY)
    with pytest.raises(Conflict) as err:
        state.retry(NOW, secrets_wiped=True)
    assert err.value.reason == "SECRETS_WIPED"
    state.retry(NOW, secrets_wiped=False)
    assert state.status is MessageStatus.QUEUED and state.attempts == 0 and state.next_attempt_at == NOW


def test_every_transition_is_in_the_table_and_final_states_have_none() -> None:
    for status in (MessageStatus.SENT, MessageStatus.CANCELLED):
        for transition in Transition:
            with pytest.raises(IllegalTransition):
                next_status(status, transition)
    assert TRANSITIONS[(MessageStatus.FAILED, Transition.RETRIED)] is MessageStatus.QUEUED


def test_message_id_is_stable_per_key_and_distinct_across_keys() -> None:
    a = message_id_header("inbox-request:42", "library.example.org")
    assert a == message_id_header("inbox-request:42", "library.example.org")
    assert a != message_id_header("inbox-request:43", "library.example.org")
    assert a.startswith("<") and a.endswith("@library.example.org>")


# --- templates --------------------------------------------------------------------------------


def test_every_built_in_event_ships_in_italian_and_english_and_renders() -> None:
    renderer = Renderer()
    assert {key for key, _ in SHIPPED} == BUILT_IN_KEYS
    for key in BUILT_IN_KEYS:
        assert (key, "it") in SHIPPED and (key, "en") in SHIPPED
    for template in all_shipped():
        preview = renderer.check(template)
        assert "Maria Rossi" in preview.body_text, template.event_key


def test_italian_ready_notice_reads_naturally() -> None:
    template = next(t for t in all_shipped() if (t.event_key, t.language) == ("reservation_ready", "it"))
    preview = Renderer().check(template)
    assert preview.subject == "Biblioteca civica: «Il nome della rosa» è già disponibile"
    assert "è già disponibile e ti aspetta presso Sede centrale." in preview.body_text


def test_template_with_syntax_error_is_refused_with_the_line() -> None:
    bad = Template("reservation_ready", "en", "Ready", "Hello\n{% if title %}\nno end")
    with pytest.raises(InvalidInput) as err:
        Renderer().check(bad)
    assert err.value.field == "template.body_text"
    assert "line" in str(err.value)


def test_template_using_an_undocumented_variable_is_refused() -> None:
    bad = Template("reservation_ready", "en", "Ready: {{ shelf_mark }}", "Hello")
    with pytest.raises(InvalidInput) as err:
        Renderer().check(bad)
    assert err.value.field == "template.subject"
    assert "shelf_mark" in str(err.value)


def test_template_failing_only_when_an_optional_variable_is_empty_is_refused() -> None:
    bad = Template("reservation_ready", "en", "Ready", "Keep {{ pickup_period_days | int // 0 }}")
    with pytest.raises(InvalidInput):
        Renderer().check(bad)


def test_sandbox_blocks_reaching_python_internals() -> None:
    evil = Template("free_message", "en", "Hi", "{{ message.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(InvalidInput):
        Renderer().check(evil)


def test_html_body_is_escaped_but_text_body_is_not() -> None:
    template = Template("free_message", "en", "Hi", "{{ message }}", "<p>{{ message }}</p>")
    out = Renderer().render(template, {"message": "Tom & <Jerry>", "patron_name": "x"})
    assert out.body_text == "Tom & <Jerry>"
    assert out.body_html == "<p>Tom &amp; &lt;Jerry&gt;</p>"


def test_subject_cannot_inject_headers() -> None:
    template = Template("free_message", "en", "Hi {{ message }}", "x")
    out = Renderer().render(template, {"message": "there\r\nBcc: victim@example.org"})
    assert "\n" not in out.subject and "\r" not in out.subject


def test_bad_event_key_and_language_name_the_field() -> None:
    with pytest.raises(InvalidInput) as err:
        Renderer().check(Template("Bad Key", "en", "s", "b"))
    assert err.value.field == "template.event_key"
    with pytest.raises(InvalidInput) as err:
        Renderer().check(Template("free_message", "de", "s", "b"))
    assert err.value.field == "template.language"


# --- variables and secrets --------------------------------------------------------------------

COMMON = {
    "patron_name": "Maria Rossi",
    "patron_card": "001",
    "patron_email": "m@example.org",
    "library_name": "Biblioteca",
    "today": "2026-03-14",
}


def test_missing_required_variable_is_refused_naming_it() -> None:
    with pytest.raises(InvalidInput) as err:
        prepare_variables(event_for("reservation_ready"), {}, {}, COMMON)
    assert err.value.field == "variables[title]"


def test_optional_variables_default_to_empty() -> None:
    delivered, _ = prepare_variables(event_for("reservation_ready"), {"title": "X"}, {}, COMMON)
    assert delivered["pickup_deadline"] == "" and delivered["title"] == "X"


def test_secret_passed_in_the_clear_is_refused() -> None:
    with pytest.raises(InvalidInput) as err:
        prepare_variables(event_for("credentials"), {"username": "u", "password": "p"}, {}, COMMON)
    assert err.value.field == "variables[password]"


def test_secret_is_rendered_for_delivery_but_redacted_in_the_copy() -> None:
    template = next(t for t in all_shipped() if (t.event_key, t.language) == ("credentials", "en"))
    delivered, redacted = prepare_variables(
        event_for("credentials"), {"username": "mrossi"}, {"password": "S3cret-pw"}, COMMON
    )
    pair = render_pair(Renderer(), template, delivered, redacted, has_secrets=True)
    assert "S3cret-pw" in pair.delivered.body_text
    assert "S3cret-pw" not in pair.redacted.body_text and REDACTED in pair.redacted.body_text


def test_secret_is_scrubbed_even_when_a_template_transforms_it() -> None:
    template = Template("credentials", "en", "Hi", "{{ password }} / {{ password | upper }} / {{ message }}")
    delivered, redacted = prepare_variables(
        event_for("credentials"),
        {"username": "u", "message": "pw is abcd1234"},
        {"password": "abcd1234"},
        COMMON,
    )
    pair = render_pair(Renderer(), template, delivered, redacted, has_secrets=True)
    assert "abcd1234" not in pair.redacted.body_text


def test_a_patron_not_yet_enrolled_has_no_card_and_still_gets_messages() -> None:
    delivered, _ = prepare_variables(
        event_for("free_message"), {"message": "Ciao"}, {}, {**COMMON, "patron_card": ""}
    )
    assert delivered["patron_card"] == "" and delivered["message"] == "Ciao"


@settings(max_examples=40, deadline=None)
@given(
    password=st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=4, max_size=40).filter(
        lambda p: p.strip() == p and p.strip() != "" and "*" not in p
    ),
    note=st.text(max_size=200),
    username=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=20),
)
def test_no_secret_ever_survives_in_the_history_copy(password: str, note: str, username: str) -> None:
    template = next(t for t in all_shipped() if (t.event_key, t.language) == ("credentials", "it"))
    delivered, redacted = prepare_variables(
        event_for("credentials"),
        {"username": username, "message": note + password},
        {"password": password},
        COMMON,
    )
    pair = render_pair(Renderer(), template, delivered, redacted, has_secrets=True)
    assert password in pair.delivered.body_text
    for part in (pair.redacted.subject, pair.redacted.body_text, pair.redacted.body_html):
        assert password not in part
