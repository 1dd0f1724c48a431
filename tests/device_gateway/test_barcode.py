import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.device_gateway.hardware.barcode import (
    CODE39_CHARS,
    LineFramer,
    ScannerConfig,
    ScanRejected,
    Symbology,
    code39_check_char,
    encode_scan,
    gtin_check_digit,
    luhn_check_digit,
    luhn_valid,
    parse_scan,
)

PLAIN = ScannerConfig()


def test_check_digit_helpers() -> None:
    assert gtin_check_digit("978020137962") == "4"  # EAN-13 9780201379624
    assert gtin_check_digit("9638507") == "4"  # EAN-8 96385074
    assert code39_check_char("CODE39") == "W"
    assert luhn_valid("79927398713") and not luhn_valid("79927398710")
    assert luhn_check_digit("3123400001234") == "2"  # 14-digit library card


@pytest.mark.parametrize(
    ("line", "symbology", "value"),
    [
        ("]A1CODE39W", Symbology.CODE39, "CODE39"),
        ("]A0ABC-123", Symbology.CODE39, "ABC-123"),
        ("]C0LIB000123", Symbology.CODE128, "LIB000123"),
        ("]E09780201379624", Symbology.EAN13, "9780201379624"),
        ("]E4" + "96385074", Symbology.EAN8, "96385074"),
        ("]F0A31234000012342B", Symbology.CODABAR, "31234000012342"),
        ("12345", Symbology.UNKNOWN, "12345"),
    ],
)
def test_valid_reads(line: str, symbology: Symbology, value: str) -> None:
    scan = parse_scan(line, PLAIN)
    assert (scan.symbology, scan.value) == (symbology, value)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("]A1CODE39X", "CHECK_DIGIT_MISMATCH"),
        ("]E09780201379625", "CHECK_DIGIT_MISMATCH"),
        ("]E097802013796", "BAD_LENGTH"),
        ("]F0A31234000012345", "CODABAR_START_STOP"),
        ("]F031234000012345", "CODABAR_START_STOP"),
        ("]A0abc", "INVALID_CHARACTER"),
        ("]C0", "EMPTY"),
        ("]C", "BAD_AIM_ID"),
        ("]C0AB\x07C", "NOISE"),
    ],
)
def test_rejected_reads(line: str, reason: str) -> None:
    with pytest.raises(ScanRejected) as err:
        parse_scan(line, PLAIN)
    assert err.value.reason == reason


def test_luhn_lengths_and_codabar_library_cards() -> None:
    config = ScannerConfig(luhn_lengths=frozenset({14}))
    assert parse_scan("]F0A31234000012342B", config).value == "31234000012342"
    with pytest.raises(ScanRejected) as err:
        parse_scan("]F0A31234000012345B", config)
    assert err.value.reason == "CHECK_DIGIT_MISMATCH"
    assert parse_scan("]C01234", config).value == "1234"  # other lengths are not Luhn numbers


def test_prefix_suffix_and_required_aim() -> None:
    config = ScannerConfig(prefix="@", suffix="#", require_aim=True, code39_check=True)
    assert parse_scan("@]A0CODE39W#", config).value == "CODE39"
    for line, reason in [
        ("]A0CODE39W#", "PREFIX_MISSING"),
        ("@]A0CODE39W", "SUFFIX_MISSING"),
        ("@X#", "AIM_ID_MISSING"),
    ]:
        with pytest.raises(ScanRejected) as err:
            parse_scan(line, config)
        assert err.value.reason == reason


code39_values = st.text(alphabet=CODE39_CHARS.replace(" ", ""), min_size=1, max_size=20)
symbology_values = st.one_of(
    st.tuples(st.just(Symbology.CODE39), code39_values),
    st.tuples(st.just(Symbology.CODE128), st.text(alphabet="ABCXYZ0123456789-", min_size=1, max_size=20)),
    st.tuples(st.just(Symbology.EAN13), st.text(alphabet="0123456789", min_size=12, max_size=12)),
    st.tuples(st.just(Symbology.EAN8), st.text(alphabet="0123456789", min_size=7, max_size=7)),
    st.tuples(st.just(Symbology.CODABAR), st.text(alphabet="0123456789", min_size=1, max_size=16)),
)


@given(symbology_values, st.sampled_from([b"\r", b"\n", b"\r\n"]), st.integers(1, 7))
def test_emulated_bytes_parse_back(case: tuple[Symbology, str], terminator: bytes, chunk: int) -> None:
    symbology, value = case
    wire = encode_scan(value, symbology, terminator=terminator) * 2
    framer = LineFramer()
    lines = []
    for i in range(0, len(wire), chunk):  # arbitrary splits: partial lines are reassembled
        lines += framer.feed(wire[i : i + chunk])
    assert len(lines) == 2
    scan = parse_scan(lines[0].decode("latin-1"), PLAIN)
    assert scan.symbology is symbology
    assert scan.value.startswith(value)  # EAN values come back with their check digit


def test_framer_drops_stale_partial_lines_and_overlong_noise() -> None:
    now = [0.0]
    framer = LineFramer(max_line_length=10, stale_after=1.0, clock=lambda: now[0])
    assert framer.feed(b"\x00\x11]C0ABC") == []
    now[0] = 5.0  # the rest of that read never came
    assert framer.feed(b"]C0XYZ\r") == [b"]C0XYZ"]
    assert framer.dropped == 1
    assert framer.feed(b"A" * 30 + b"\r\nOK\r\n") == [b"OK"]
    assert framer.dropped == 2
