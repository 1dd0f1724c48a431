"""Unit tests of the patrons domain: names, field rules, cards, state machines, credential policy."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from bibliodesk.runtime.errors import FailedPrecondition, InvalidArgument, Violations
from services.patrons.domain import cards, credentials, names
from services.patrons.domain.categories import Category
from services.patrons.domain.credentials import (
    CredentialsEvent,
    CredentialsState,
    LockoutPolicy,
    LoginThrottle,
    credentials_transition,
)
from services.patrons.domain.patron import (
    TRANSITIONS,
    Origin,
    Patron,
    PatronEvent,
    PatronStatus,
    add_months,
    transition,
)
from services.patrons.domain.rules import Address, DetailsInput, validate_details

TODAY = date(2026, 12, 3)


# --- names ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("typed", "stored"),
    [
        ("nicolo", "Nicolò"),
        ("NICOLO", "Nicolò"),
        ("dangelo", "D'Angelo"),
        ("d'angelo", "D’Angelo"),
        ("d angelo", "D'Angelo"),
        ("deluca", "De Luca"),
        ("de luca", "Deluca"),
        ("Muller", "Müller"),
        ("strasse", "Straße"),
        ("lucia", "Lucìa"),
    ],
)
def test_folding_makes_search_accent_case_and_punctuation_insensitive(typed: str, stored: str) -> None:
    assert names.fold(stored).startswith(names.fold(typed))


def test_search_key_orders_by_surname_then_given_name_and_prefix_range_is_tight() -> None:
    keys = sorted(
        [
            names.search_key("Rossi", "Mario"),
            names.search_key("Rossini", "Anna"),
            names.search_key("Rossi", "Anna"),
            names.search_key("Ross", "Zoe"),
        ]
    )
    assert keys == ["ross zoe", "rossi anna", "rossi mario", "rossini anna"]
    low, high = names.prefix_range("Rossi")
    assert [k for k in keys if low <= k < high] == ["rossi anna", "rossi mario", "rossini anna"]
    low, high = names.prefix_range("Rossi ")  # trailing space is folded away: still a prefix
    assert low == "rossi"


# --- field rules ---------------------------------------------------------------------------------


def good_form(**changes: str) -> DetailsInput:
    base = dict(
        given_name="Nicolò",
        surname="D'Angelo",
        birth_date="1990-04-12",
        birth_place="Bari",
        street="Via Roma 12",
        postal_code="20121",
        city="Milano",
        province="mi",
        email="Nicolo.DAngelo@Example.IT",
        phone="+39 02 1234567",
        home_branch="centrale",
    )
    base.update(changes)
    return DetailsInput(**base)


def test_a_good_form_is_normalised() -> None:
    d = validate_details(good_form(), today=TODAY, email_required=True)
    assert d.given_name == "Nicolò" and d.surname == "D'Angelo"
    assert d.birth_date == date(1990, 4, 12)
    assert d.address == Address("Via Roma 12", "20121", "Milano", "MI", "IT")
    assert d.email == "Nicolo.DAngelo@example.it"
    assert d.home_branch == "CENTRALE" and d.language == "it"


@pytest.mark.parametrize(
    ("change", "field", "reason"),
    [
        ({"given_name": ""}, "details.given_name", "REQUIRED"),
        ({"surname": "R0ssi"}, "details.surname", "INVALID"),
        ({"surname": "x" * 101}, "details.surname", "TOO_LONG"),
        ({"birth_date": "12/04/1990"}, "details.birth_date", "BAD_FORMAT"),
        ({"birth_date": "1990-02-30"}, "details.birth_date", "BAD_FORMAT"),
        ({"birth_date": "2030-01-01"}, "details.birth_date", "OUT_OF_RANGE"),
        ({"birth_place": ""}, "details.birth_place", "REQUIRED"),
        ({"street": ""}, "details.address.street", "REQUIRED"),
        ({"postal_code": "2012"}, "details.address.postal_code", "BAD_FORMAT"),
        ({"province": "Milano"}, "details.address.province", "BAD_FORMAT"),
        ({"country_code": "Italy"}, "details.address.country_code", "BAD_FORMAT"),
        ({"email": "nicolo@"}, "details.email", "BAD_FORMAT"),
        ({"email": ""}, "details.email", "REQUIRED"),
        ({"phone": "call me"}, "details.phone", "BAD_FORMAT"),
        ({"home_branch": "centrale!"}, "details.home_branch", "BAD_FORMAT"),
        ({"language": "fr"}, "details.language", "UNSUPPORTED"),
        ({"surname": "Rossi\x00"}, "details.surname", "INVALID"),
    ],
)
def test_each_bad_field_is_named(change: dict[str, str], field: str, reason: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        validate_details(good_form(**change), today=TODAY, email_required=True)
    assert (field, reason) in [(v.field, v.reason) for v in err.value.violations]


def test_every_bad_field_is_reported_at_once() -> None:
    with pytest.raises(InvalidArgument) as err:
        validate_details(
            good_form(given_name="", email="bad", postal_code="x"), today=TODAY, email_required=True
        )
    assert {v.field for v in err.value.violations} == {
        "details.given_name",
        "details.email",
        "details.address.postal_code",
    }


def test_unknown_branch_is_refused_when_the_library_lists_its_branches() -> None:
    with pytest.raises(InvalidArgument) as err:
        validate_details(
            good_form(home_branch="NORD"),
            today=TODAY,
            email_required=True,
            branches=frozenset({"CENTRALE", "SUD"}),
        )
    assert err.value.violations[0].field == "details.home_branch"


# --- cards ---------------------------------------------------------------------------------------


def test_luhn_rule_accepts_valid_and_catches_a_single_digit_typo() -> None:
    rule = cards.CardRule("luhn", 13, "2")
    for _ in range(50):
        number = rule.generate()
        assert len(number) == 13 and number.startswith("2")
        assert rule.normalize(number) == number
        typo = number[:5] + str((int(number[5]) + 1) % 10) + number[6:]
        with pytest.raises(InvalidArgument) as err:
            rule.normalize(typo)
        assert err.value.violations[0].reason == "BAD_CHECK_DIGIT"


def test_known_check_digits() -> None:
    assert cards.luhn_check_digit("7992739871") == "3"
    assert cards.ean_check_digit("400638133393") == "1"  # EAN-13 4006381333931


def test_card_format_errors_name_the_field() -> None:
    rule = cards.CardRule("ean", 13, "2")
    with pytest.raises(InvalidArgument) as err:
        rule.normalize("12AB", field="card_barcode")
    assert err.value.violations[0].field == "card_barcode"
    with pytest.raises(InvalidArgument):
        rule.normalize("123456")
    free = cards.CardRule("none", 0, "")
    assert free.normalize(" ab-1234 ") == "AB-1234"


def test_rfid_uid_is_normalised() -> None:
    assert cards.normalize_rfid_uid("e0:04:01:50:12:34:56:78") == "E004015012345678"
    for bad in ("", "XYZ", "E00", "E0040150123456789"):
        with pytest.raises(InvalidArgument):
            cards.normalize_rfid_uid(bad)


# --- patron state machine ------------------------------------------------------------------------


def make_patron(**changes: object) -> Patron:
    p = Patron(
        id="p1",
        origin=Origin.WEB,
        status=PatronStatus.PRE_REGISTERED,
        given_name="Anna",
        surname="Rossi",
        birth_date=date(1980, 1, 2),
        birth_place="Roma",
        address=Address("Via Po 1", "00100", "Roma"),
    )
    for k, v in changes.items():
        setattr(p, k, v)
    return p


def test_every_transition_has_a_reason_and_invalid_ones_are_refused() -> None:
    assert all(t.reason for t in TRANSITIONS)
    assert transition(PatronStatus.PRE_REGISTERED, PatronEvent.ENROLL).target == PatronStatus.ENROLLED
    with pytest.raises(FailedPrecondition) as err:
        transition(PatronStatus.ENROLLED, PatronEvent.ENROLL)
    assert err.value.reason == "ALREADY_ENROLLED"
    with pytest.raises(FailedPrecondition) as err:
        transition(PatronStatus.PRE_REGISTERED, PatronEvent.SUSPEND)
    assert err.value.reason == "NOT_ENROLLED"


def test_enrollment_needs_document_and_nationality() -> None:
    p = make_patron()
    assert p.missing_for_enrollment() == ["document_type", "document_number", "nationality"]
    with pytest.raises(FailedPrecondition) as err:
        p.require_complete()
    assert err.value.reason == "ENROLLMENT_INCOMPLETE"
    assert err.value.metadata["missing_fields"] == "document_type,document_number,nationality"


def test_expired_is_derived_from_the_expiry_date() -> None:
    p = make_patron(status=PatronStatus.ENROLLED, enrollment_expiry_date=date(2026, 12, 2))
    assert p.effective_status(TODAY) == PatronStatus.EXPIRED
    assert p.effective_status(date(2026, 12, 2)) == PatronStatus.ENROLLED


def test_category_expiry_adds_calendar_months() -> None:
    cat = Category("ADULT", "Adulti", 10, 5, 12, 7)
    assert cat.expiry_for(date(2026, 12, 3)) == date(2027, 12, 3)
    assert add_months(date(2027, 1, 31), 1) == date(2027, 2, 28)
    assert add_months(date(2028, 1, 31), 1) == date(2028, 2, 29)


# --- credentials ---------------------------------------------------------------------------------


def test_credential_transitions() -> None:
    assert (
        credentials_transition(CredentialsState.NONE, CredentialsEvent.ISSUE).target
        == CredentialsState.TEMPORARY
    )
    assert (
        credentials_transition(CredentialsState.PATRON_DEFINED, CredentialsEvent.REGENERATE).target
        == CredentialsState.TEMPORARY
    )
    with pytest.raises(FailedPrecondition) as err:
        credentials_transition(CredentialsState.PATRON_DEFINED, CredentialsEvent.ISSUE)
    assert err.value.reason == "CREDENTIALS_ALREADY_DEFINED"
    with pytest.raises(FailedPrecondition) as err:
        credentials_transition(CredentialsState.NONE, CredentialsEvent.REGENERATE)
    assert err.value.reason == "NO_CREDENTIALS"


@pytest.mark.parametrize(
    ("password", "username", "reason"),
    [
        ("short", "anna", "TOO_SHORT"),
        ("anna.rossi-library", "anna.rossi", "CONTAINS_USERNAME"),
        ("Password2024!", "anna", "COMMON_PASSWORD"),
        ("juventus1897", "anna", "COMMON_PASSWORD"),
        ("aaaaaaaaaaaa", "anna", "TOO_WEAK"),
        ("x" * 129, "anna", "TOO_LONG"),
    ],
)
def test_password_policy(password: str, username: str, reason: str) -> None:
    v = Violations()
    credentials.check_password(v, "new_password", password, username)
    assert [(i.field, i.reason) for i in v.items] == [("new_password", reason)]


def test_a_good_password_passes() -> None:
    v = Violations()
    credentials.check_password(v, "new_password", "lampione verde sul lago", "anna.rossi")
    assert not v


def test_generated_and_derived_passwords_are_readable_and_strong() -> None:
    for pw in (credentials.generate_password(), credentials.derive_password(b"k" * 32, "issue-1")):
        groups = pw.split("-")
        assert len(groups) == 4 and all(len(g) == 4 for g in groups)
        assert set(pw.replace("-", "")) <= set(credentials.READABLE_ALPHABET)
    assert credentials.derive_password(b"k" * 32, "a") == credentials.derive_password(b"k" * 32, "a")
    assert credentials.derive_password(b"k" * 32, "a") != credentials.derive_password(b"k" * 32, "b")
    assert credentials.derive_password(b"k" * 32, "a") != credentials.derive_password(b"j" * 32, "a")


def test_lockout_after_repeated_failures_then_unlocks() -> None:
    policy = LockoutPolicy(max_failures=3, lock_for=timedelta(minutes=15))
    t0 = datetime(2026, 12, 3, 9, tzinfo=UTC)
    throttle = LoginThrottle("k")
    for i in range(3):
        assert not throttle.is_locked(t0)
        throttle.record_failure(t0 + timedelta(seconds=i), policy)
    assert throttle.is_locked(t0 + timedelta(minutes=5))
    assert not throttle.is_locked(t0 + timedelta(minutes=16))
    throttle.record_failure(t0 + timedelta(minutes=16), policy)
    assert throttle.failures == 1 and not throttle.is_locked(t0 + timedelta(minutes=16))


def test_stored_keys_and_phone_fit_their_columns() -> None:
    p = make_patron(surname="ﬃ" * 100, given_name="ﬃ" * 100)
    assert len(p.search_key) <= 240 and len(p.given_key) <= 240
    with pytest.raises(InvalidArgument) as err:
        validate_details(good_form(phone="1" + "-" * 60 + "234567"), today=TODAY, email_required=True)
    assert err.value.violations[0].reason == "TOO_LONG"
