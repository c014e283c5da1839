"""Sweeps: grid expansion, per-mode weight decays, the decoupling preset, a diverging grid point."""

from __future__ import annotations

from pathlib import Path

import pytest

from optreg.config import ConfigError, RunConfig
from optreg.data import write_synthetic_cifar10
from optreg.executors.base import Resources
from optreg.executors.local import DataSpec, LocalExecutor
from optreg.results import Study
from optreg.studies.execute import execute_study
from optreg.studies.output import Identity, StudyFolder
from optreg.studies.sweep import (
    DECOUPLING_LRS,
    DECOUPLING_WEIGHT_DECAYS,
    SWEEP_MODES,
    decoupling_study,
    sweep_name,
    sweep_study,
)

# --- grid expansion ------------------------------------------------------------------------


def test_sweep_study_expands_the_grid() -> None:
    configs, study = sweep_study(lr=[1e-3, 1e-2], weight_decay=[1e-4, 1e-2, 1.0],
                                 mode=list(SWEEP_MODES), seeds=[0, 1], epochs=3,
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
    loss = next(c for c in configs if c.name == "loss-lr1e-2-wd1")
    assert loss.l2 == 1.0 * 32  # the loss carries λ = wd·B
    assert study["kind"] == "sweep" and study["name"] == "sweep"
    assert study["grid"] == {"lr": [1e-3, 1e-2], "weight_decay": [1e-4, 1e-2, 1.0],
                             "mode": list(SWEEP_MODES), "seeds": [0, 1]}
    assert set(study["descriptions"]) == {c.name for c in configs}
    assert [RunConfig.from_dict(c.to_dict()) for c in configs] == configs


def test_sweep_names() -> None:
    assert sweep_name("coupled", 1e-3, 1e-2) == "coupled-lr1e-3-wd1e-2"
    assert sweep_name("decoupled", 3.162e-4, 1.0) == "decoupled-lr3.162e-4-wd1"
    assert sweep_name("paper", 0.5, 12345.0) == "paper-lr0.5-wd1.2345e4"


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"lr": []}, "lr: give at least one"),
        ({"seeds": [0, 0]}, "seeds: repeated"),
        ({"mode": ["none"]}, "unknown 'none'"),
        ({"weight_decay": [0.0]}, "decay_mode"),  # RunConfig: a mode needs weight_decay > 0
        ({"lr": [-1.0]}, "lr=-1.0"),
        ({"weight_decay": {"paper": [1e-3]}}, "one list per mode"),
    ],
)
def test_sweep_study_rejects_bad_grids(changes: dict, match: str) -> None:
    grid = {"lr": [1e-3], "weight_decay": [1e-2], "mode": ["coupled"], "seeds": [0]}
    with pytest.raises(ConfigError, match=match):
        sweep_study(**{**grid, **changes}, epochs=1)


def test_per_mode_weight_decays() -> None:
    configs, study = sweep_study(lr=[1e-3], weight_decay={"coupled": [1e-4], "decoupled": [0.1,
                                 1.0]}, mode=["coupled", "decoupled"], epochs=1)
    assert [(c.decay_mode, c.weight_decay) for c in configs] == [
        ("coupled", 1e-4), ("decoupled", 0.1), ("decoupled", 1.0)]
    assert study["grid"]["weight_decay"] == {"coupled": [1e-4], "decoupled": [0.1, 1.0]}


def test_decoupling_preset_is_the_published_run() -> None:
    configs, study = decoupling_study()
    assert len(configs) == 3 * 3 * 3  # lr × wd per mode × three modes, one seed
    assert list(DECOUPLING_LRS) == [3.162e-4, 1e-3, 3.162e-3]
    assert DECOUPLING_WEIGHT_DECAYS == {"coupled": (1e-5, 1e-4, 1e-3),
                                        "decoupled": (1e-2, 1e-1, 1.0),
                                        "paper": (1e-5, 1e-4, 1e-3)}
    assert [c.decay_mode for c in configs[::9]] == ["coupled", "decoupled", "paper"]
    assert {(c.schedule, c.epochs, c.train_size, c.valid_size, c.test_size, c.augment, c.seed)
            for c in configs} == {("cosine", 20, None, 5000, None, False, 0)}
    assert study["name"] == "decoupling" and "1711.05101" in study["reference"]
    assert study["settings"]["valid_size"] == 5000 and study["grid"]["seeds"] == [0]
    small, _ = decoupling_study(epochs=1, seeds=[3], train_size=500)
    assert len(small) == 27 and {(c.epochs, c.seed, c.train_size) for c in small} == {(1, 3, 500)}


# --- a diverging grid point ----------------------------------------------------------------


def test_diverging_grid_point_is_marked_and_the_sweep_goes_on(tmp_path: Path) -> None:
    """AdamW with lr·wd = 1e6 multiplies the weights by (1 − 1e6) every step: inf within steps."""
    data_dir = tmp_path / "data"
    write_synthetic_cifar10(data_dir, n_train=128, n_test=32)
    configs, study = sweep_study(lr=[1e6, 1e-3], weight_decay=[1.0], mode=["decoupled"],
                                 seeds=[0], epochs=2)
    executor = LocalExecutor(DataSpec(str(data_dir)), Resources())
    with StudyFolder.claim(tmp_path / "out", Identity("sweep", None, 1), resume=False) as folder:
        out = execute_study(configs, Study("sweep", "sweep", grid=study["grid"]), folder,
                            executor, progress=False)
    diverged, ok = out.runs
    assert diverged.name == "decoupled-lr1e6-wd1" and diverged.status == "diverged"
    assert diverged.diverged_at is not None and diverged.diverged_at.epoch in (1, 2)
    assert diverged.test_acc is None
    assert ok.status == "ok" and len(ok.history.valid_acc) == 2
    assert ok.test_acc is not None and 0.0 <= ok.test_acc <= 1.0
    assert len(list((tmp_path / "out" / "runs").glob("*.json"))) == 2
