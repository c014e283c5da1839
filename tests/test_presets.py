"""The research presets: the overfitting study and Adam from its parts, as run configs."""

from __future__ import annotations

import pytest

from optreg.config import ConfigError
from optreg.studies import adam_parts_study, overfitting_study
from optreg.studies.overfitting import AUGMENT_DECAY, MATCHES


def test_overfitting_validates_on_held_out_images_over_two_seeds() -> None:
    configs, study = overfitting_study()
    names = list(dict.fromkeys(c.name for c in configs))
    assert names == ["none", "l2-loss", "l2", "l2-weak", "adamw-0.1", "adamw-1", "augment",
                     "smoothing", f"augment-{AUGMENT_DECAY}"]
    assert sorted({c.seed for c in configs}) == [0, 1] and len(configs) == 18
    assert {(c.valid_size, c.train_size, c.epochs, c.batch_size, c.lr) for c in configs} == {
        (5_000, None, 20, 32, 1e-3)}
    assert len({c.run_id for c in configs}) == 18
    assert study["matches"] == [list(m) for m in MATCHES]
    with pytest.raises(ConfigError, match="held-out"):
        overfitting_study(valid_size=None)


def test_overfitting_regularizers_each_change_one_thing() -> None:
    by_name = {c.name: c for c in overfitting_study(seeds=(0,))[0]}
    none = by_name["none"]
    assert (none.weight_decay, none.augment, none.label_smoothing) == (0.0, False, 0.0)
    # the exercise's L2 twins: one coefficient, two routes
    assert by_name["l2-loss"].weight_decay == by_name["l2"].weight_decay == 0.1 / 32
    assert (by_name["l2-loss"].decay_mode, by_name["l2"].decay_mode) == ("loss", "coupled")
    assert by_name["l2-weak"].weight_decay == pytest.approx(0.01 / 32)
    assert [by_name[n].weight_decay for n in ("adamw-0.1", "adamw-1")] == [0.1, 1.0]
    assert by_name["augment"].augment and by_name["smoothing"].label_smoothing == 0.1
    both, decay = by_name[f"augment-{AUGMENT_DECAY}"], by_name[AUGMENT_DECAY]
    assert both.augment and (both.decay_mode, both.weight_decay) == (decay.decay_mode,
                                                                      decay.weight_decay)


def test_adam_parts_builds_adam_up_and_traces_the_first_steps() -> None:
    configs, _ = adam_parts_study()
    by_name = {c.name: c for c in configs}
    assert list(by_name) == ["sgd", "sgd-ema", "rmsprop", "adam-no-bias-correction", "adam",
                             "sgd-exercise", "sgd-0.01"]
    assert all(c.implementation == "optreg" and c.loss == "optreg" and c.trace_steps == 100
               and c.valid_size is None and (c.epochs, c.seed) == (10, 0) for c in configs)
    assert (by_name["sgd"].optimizer, by_name["sgd"].lr, by_name["sgd"].momentum) == (
        "sgd", 1e-3, 0.0)
    ema = by_name["sgd-ema"]
    assert (ema.momentum, ema.dampening, ema.lr) == (0.9, 0.9, 1e-3)  # Adam's first moment
    assert (by_name["rmsprop"].optimizer, by_name["rmsprop"].alpha) == ("rmsprop", 0.999)
    assert not by_name["adam-no-bias-correction"].bias_correction
    assert by_name["adam"].bias_correction and by_name["adam"].optimizer == "adam"
    assert [(by_name[n].lr, by_name[n].momentum) for n in ("sgd-exercise", "sgd-0.01")] == [
        (0.1, 0.9), (0.01, 0.9)]
