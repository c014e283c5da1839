"""Command-line values: grid options (comma lists, log ranges), seeds, modes, pairs.

Every bad text is refused with a ConfigError that names the option and the text."""

from __future__ import annotations

import math

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from optreg.cli.values import parse_floats, parse_ints, parse_modes, parse_names, parse_pair
from optreg.config import ConfigError
from optreg.formatting import format_number
from optreg.studies.sweep import log_range

# --- parse_floats -------------------------------------------------------------------------------


def test_log_range_values_count_and_endpoints() -> None:
    assert parse_floats("1e-4:1e-2:5", "--lr") == [1e-4, 3.162e-4, 1e-3, 3.162e-3, 1e-2]
    assert parse_floats("1e-4:1:5", "--wd") == [1e-4, 1e-3, 1e-2, 1e-1, 1.0]
    assert parse_floats("1e-3:1e-3:1", "--lr") == [1e-3]
    assert parse_floats("1e-2:1e-4:3", "--lr") == [1e-2, 1e-3, 1e-4]  # descending is kept
    values = parse_floats("1.5e-4:2.5e-2:7", "--lr")
    assert len(values) == 7 and values[0] == 1.5e-4 and values[-1] == 2.5e-2
    assert values == sorted(values)


def test_comma_lists_and_mixtures() -> None:
    assert parse_floats("1e-4,1e-3,0.01", "--lr") == [1e-4, 1e-3, 0.01]
    assert parse_floats(" 0.1 , 2 ", "--lr") == [0.1, 2.0]
    assert parse_floats("1e-4:1e-2:3,0.5", "--lr") == [1e-4, 1e-3, 1e-2, 0.5]
    assert parse_floats("-1,0,2.5", "--shift", positive=False) == [-1.0, 0.0, 2.5]


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "at least one value"),
        ("   ", "at least one value"),
        ("1e-3,,1e-2", "empty item"),
        ("1e-3,", "empty item"),
        ("abc", "'abc' is not a number"),
        ("1e-3,x", "'x' is not a number"),
        ("nan", "not a finite number"),
        ("inf", "not a finite number"),
        ("-1e-3", "must be > 0"),
        ("0", "must be > 0"),
        ("1e-3,0.001", "repeated"),
        ("1e-3:1e-1:3,1e-2", "repeated"),
        ("1e-4:1e-2", "start:stop:n"),
        ("1e-4:1e-2:5:1", "start:stop:n"),
        ("1e-4:1e-2:0", "integer >= 1"),
        ("1e-4:1e-2:2.5", "integer >= 1"),
        ("1e-4:1e-2:x", "integer >= 1"),
        ("1e-4:1e-2:-3", "integer >= 1"),
        ("1e-4:1e-2:1", "needs start == stop"),
        ("1e-3:1e-3:4", "equal values"),
        ("0:1e-2:5", "log range"),
        ("-1e-4:1e-2:5", "log range"),
        ("1e-4:inf:5", "finite"),
        ("1e-4:1e-2:100000", "at most"),
    ],
)
def test_bad_floats_name_the_option_and_text(text: str, why: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_floats(text, "--lr")
    message = str(info.value)
    assert message.startswith(f"--lr {text!r}"), message
    assert why in message, message


@given(
    st.lists(
        st.floats(min_value=1e-12, max_value=1e12, allow_nan=False, allow_infinity=False),
        min_size=1, max_size=8, unique=True,
    )
)
def test_comma_list_round_trips_exactly(values: list[float]) -> None:
    assert parse_floats(",".join(repr(v) for v in values), "--lr") == values
    assert parse_floats(",".join(format_number(v) for v in values), "--lr") == values


@given(
    st.floats(min_value=1e-8, max_value=1e8),
    st.floats(min_value=1e-8, max_value=1e8),
    st.integers(min_value=2, max_value=12),
)
def test_log_ranges_are_log_spaced_with_exact_endpoints(start: float, stop: float, n: int) -> None:
    assume(abs(math.log10(stop / start)) > 0.01 * n)  # points far apart (4 digits keep them)
    values = parse_floats(f"{start!r}:{stop!r}:{n}", "--wd")
    assert len(values) == n and values[0] == start and values[-1] == stop
    step = math.log(stop / start) / (n - 1)
    for i, v in enumerate(values):
        assert math.isclose(math.log(v / start), i * step, abs_tol=1e-3)
        assert v == float(f"{v:.4g}") or i in (0, n - 1)  # interior points: 4 digits
    assert values == log_range(start, stop, n)  # stable: the same text, the same floats


# --- parse_ints, parse_modes ----------------------------------------------------------------


def test_ints_lists_and_ranges() -> None:
    assert parse_ints("0,1", "--seeds") == [0, 1]
    assert parse_ints("0-3", "--seeds") == [0, 1, 2, 3]
    assert parse_ints("5, 0-2", "--seeds") == [5, 0, 1, 2]
    assert parse_ints("7-7", "--seeds") == [7]


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "at least one value"),
        ("0,,1", "empty item"),
        ("1.5", "not an integer"),
        ("x", "not an integer"),
        ("-1", "outside [0, 18446744073709551615]"),
        ("18446744073709551616", "outside"),  # 2**64: beyond torch's seed range
        ("3-1", "a <= b"),
        ("0,1,0-2", "repeated"),
        ("0-100000", "at most"),
    ],
)
def test_bad_ints_name_the_option(text: str, why: str) -> None:
    with pytest.raises(ConfigError, match=r"^--seeds ") as info:
        parse_ints(text, "--seeds")
    assert why in str(info.value)


@given(st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=10, unique=True))
def test_int_list_round_trips(values: list[int]) -> None:
    assert parse_ints(",".join(map(str, values)), "--seeds") == values


def test_modes() -> None:
    assert parse_modes("coupled,decoupled") == ["coupled", "decoupled"]
    assert parse_modes(" Loss , paper") == ["loss", "paper"]
    for text, why in [("none", "unknown mode 'none'"), ("adamw", "unknown mode 'adamw'"),
                      ("coupled,coupled", "repeated"), ("", "at least one value")]:
        with pytest.raises(ConfigError, match=r"^--mode ") as info:
            parse_modes(text)
        assert why in str(info.value)
    with pytest.raises(ConfigError, match="loss, coupled, decoupled, paper"):
        parse_modes("l2", "--mode")


def test_names_and_pairs() -> None:
    assert parse_names("adam, sgd", "--only") == ["adam", "sgd"]
    with pytest.raises(ConfigError, match="repeated"):
        parse_names("adam,adam", "--only")
    assert parse_pair("0.9,0.99", "--betas") == (0.9, 0.99)
    for text in ("0.9", "0.9,0.99,0.999", "a,b"):
        with pytest.raises(ConfigError, match=r"^--betas "):
            parse_pair(text, "--betas")


def test_format_number_is_the_one_formatter() -> None:
    assert [format_number(v) for v in (1.0, 0.5, 100.0, 1e-3, 3.162e-4, 12345.0, 0.0)] == [
        "1", "0.5", "100", "1e-3", "3.162e-4", "1.2345e4", "0"]
