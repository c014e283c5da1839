"""Sweeps: grid-option parsing, grid expansion, the decoupling preset, a diverging grid point."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from optreg.config import ConfigError, RunConfig
from optreg.data import write_synthetic_cifar10
from optreg.executors.base import Resources
from optreg.executors.local import DataSpec, LocalExecutor
from optreg.studies.execute import execute_study
from optreg.studies.sweep import (
    DECOUPLING_LRS,
    DECOUPLING_WEIGHT_DECAYS,
    SWEEP_MODES,
    decoupling_study,
    format_value,
    log_range,
    parse_floats,
    parse_ints,
    parse_modes,
    sweep_name,
    sweep_study,
)

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
    assert parse_floats(",".join(format_value(v) for v in values), "--lr") == values


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
        ("-1", "below the minimum 0"),
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
        with pytest.raises(ConfigError, match=r"^--modes ") as info:
            parse_modes(text)
        assert why in str(info.value)
    with pytest.raises(ConfigError, match="loss, coupled, decoupled, paper"):
        parse_modes("l2", "--mode")


# --- grid expansion ------------------------------------------------------------------------


def test_sweep_study_expands_the_grid() -> None:
    configs, study = sweep_study(lrs=[1e-3, 1e-2], weight_decays=[1e-4, 1e-2, 1.0],
                                 modes=list(SWEEP_MODES), seeds=[0, 1], epochs=3,
                                 train_size=100, test_size=50)
    assert len(configs) == 2 * 3 * 4 * 2
    assert len({c.run_id for c in configs}) == len(configs)
    for seed in (0, 1):
        names = [c.name for c in configs if c.seed == seed]
        assert len(set(names)) == 2 * 3 * 4  # unique per grid point, the same for each seed
    assert [c.name for c in configs if c.seed == 0] == [c.name for c in configs if c.seed == 1]
    assert [c.seed for c in configs[:24]] == [0] * 24  # seed-major
    c = next(c for c in configs if c.name == "coupled-lr1e-3-wd1e-2")
    assert (c.lr, c.weight_decay, c.decay_mode, c.epochs, c.train_size, c.test_size) == (
        1e-3, 1e-2, "coupled", 3, 100, 50)
    assert (c.optimizer, c.implementation, c.loss) == ("adam", "optreg", "optreg")
    loss = next(c for c in configs if c.name == "loss-lr1e-2-wd1e0")
    assert loss.l2 == 1.0 * 32  # the loss carries λ = wd·B
    assert study["kind"] == "sweep" and study["name"] == "sweep"
    assert study["grid"] == {"lr": [1e-3, 1e-2], "weight_decay": [1e-4, 1e-2, 1.0],
                             "mode": list(SWEEP_MODES), "seeds": [0, 1]}
    assert set(study["descriptions"]) == {c.name for c in configs}
    assert [RunConfig.from_dict(c.to_dict()) for c in configs] == configs


def test_sweep_names() -> None:
    assert sweep_name("coupled", 1e-3, 1e-2) == "coupled-lr1e-3-wd1e-2"
    assert sweep_name("decoupled", 3.162e-4, 1.0) == "decoupled-lr3.162e-4-wd1e0"
    assert format_value(0.001) == format_value(1e-3) == "1e-3"


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"lrs": []}, "lr: give at least one"),
        ({"seeds": [0, 0]}, "seeds: repeated"),
        ({"modes": ["none"]}, "unknown 'none'"),
        ({"weight_decays": [0.0]}, "decay_mode"),  # RunConfig: a mode needs weight_decay > 0
        ({"lrs": [-1.0]}, "lr=-1.0"),
    ],
)
def test_sweep_study_rejects_bad_grids(changes: dict, match: str) -> None:
    grid = {"lrs": [1e-3], "weight_decays": [1e-2], "modes": ["coupled"], "seeds": [0]}
    with pytest.raises(ConfigError, match=match):
        sweep_study(**{**grid, **changes}, epochs=1)


def test_decoupling_preset() -> None:
    configs, study = decoupling_study()
    assert len(configs) == 5 * 5 * 2 * 2
    assert list(DECOUPLING_LRS) == [1e-4, 3.162e-4, 1e-3, 3.162e-3, 1e-2]
    assert list(DECOUPLING_WEIGHT_DECAYS) == [1e-4, 1e-3, 1e-2, 1e-1, 1.0]
    assert {c.decay_mode for c in configs} == {"coupled", "decoupled"}
    assert {(c.schedule, c.epochs, c.train_size, c.test_size) for c in configs} == {
        ("cosine", 4, 10_000, None)}
    assert study["preset"] == "decoupling" and "1711.05101" in study["reference"]
    small, _ = decoupling_study(epochs=1, seeds=[3], train_size=500)
    assert len(small) == 50 and {(c.epochs, c.seed, c.train_size) for c in small} == {(1, 3, 500)}


# --- a diverging grid point ----------------------------------------------------------------


def test_diverging_grid_point_is_marked_and_the_sweep_goes_on(tmp_path: Path) -> None:
    """AdamW with lr·wd = 1e6 multiplies the weights by (1 − 1e6) every step: inf within steps."""
    data_dir = tmp_path / "data"
    write_synthetic_cifar10(data_dir, n_train=128, n_test=32)
    configs, study = sweep_study(lrs=[1e6, 1e-3], weight_decays=[1.0], modes=["decoupled"],
                                 seeds=[0], epochs=2)
    executor = LocalExecutor(DataSpec(str(data_dir)), Resources())
    out = execute_study(configs, study, tmp_path / "out", executor, progress=False)
    diverged, ok = out["runs"]
    assert diverged["name"] == "decoupled-lr1e6-wd1e0" and diverged["status"] == "diverged"
    assert diverged["diverged_at"]["epoch"] in (1, 2) and diverged["test_acc"] is None
    assert ok["status"] == "ok" and len(ok["history"]["valid_acc"]) == 2
    assert 0.0 <= ok["test_acc"] <= 1.0
    assert len(list((tmp_path / "out" / "runs").glob("*.json"))) == 2
