"""Training: the loop learns, runs are deterministic, evaluation is side-effect free, divergence
is caught and named, twins agree, and the train loss is the data term."""

from __future__ import annotations

import importlib
import json
import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch.nn import functional as F

from optreg.config import RunConfig
from optreg.data import Cifar10, Cifar10Split, iterate_batches, normalize
from optreg.losses import CrossEntropyLoss
from optreg.models import LeNet5
from optreg.regularization import decayed
from optreg.results import RunResult
from optreg.training import DivergenceError, History, evaluate, fit, run, train_epoch
from optreg.training.builders import build_loss, build_model, build_optimizer

Small = Callable[..., RunConfig]
COMPARED = ("status", "train_acc", "test_acc", "best_epoch", "best_test_acc", "trace")
HISTORIES = ("train_loss", "train_objective", "valid_loss", "valid_acc", "lr")


def compared(result: RunResult) -> dict[str, Any]:
    """The parts of a result that must be reproducible (no timings, no provenance)."""
    return {**{k: getattr(result, k) for k in COMPARED},
            **{k: getattr(result.history, k) for k in HISTORIES}}


def head(split: Cifar10Split, n: int) -> Cifar10Split:
    return Cifar10Split(split.images[:n], split.labels[:n])


def max_abs_diff(a: list[float], b: list[float]) -> float:
    assert len(a) == len(b)
    return max(abs(x - y) for x, y in zip(a, b, strict=True))


# --- the loop ----------------------------------------------------------------------------------


def test_fit_lowers_the_loss_and_reports_every_epoch(data: Cifar10, small: Small) -> None:
    config = small(epochs=3)
    model = build_model(config, torch.device("cpu"))
    lines: list[str] = []
    ends: list[tuple[int, int]] = []
    history = fit(model, build_loss(config, model), build_optimizer(config, model),
                  head(data.train, 256), head(data.test, 128), epochs=3, batch_size=32,
                  log=lines.append, on_epoch_end=lambda e, h: ends.append((e, len(h.valid_acc))))
    assert [len(v) for v in vars(history).values()] == [3] * 7
    assert history.train_loss[-1] < history.train_loss[0]
    assert history.valid_loss[-1] < history.valid_loss[0]
    assert all(0.0 <= a <= 1.0 for a in history.valid_acc)
    assert all(s > 0 for s in history.train_s)
    assert ends == [(1, 1), (2, 2), (3, 3)]  # called after the epoch's metrics are appended
    assert [line.split(":")[0] for line in lines] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]


def test_fit_continues_a_given_history(data: Cifar10, small: Small) -> None:
    config = small()
    model = build_model(config, torch.device("cpu"))
    history = History([9.0], [9.0], [9.0], [0.5], [1.0], [0.1], [1e-3])  # one epoch done
    ends: list[int] = []
    fit(model, build_loss(config, model), build_optimizer(config, model), head(data.train, 64),
        head(data.test, 64), epochs=3, batch_size=32, history=history, log=lambda _: None,
        on_epoch_end=lambda e, _h: ends.append(e))
    assert ends == [2, 3]
    assert len(history.train_loss) == 3 and history.train_loss[0] == 9.0


def test_stored_order_batches_are_the_data_in_order(data: Cifar10, small: Small) -> None:
    """Without a generator, train_epoch sees the images exactly in stored order."""
    seen: list[torch.Tensor] = []
    config = small()
    model = build_model(config, torch.device("cpu"))
    model.conv1.register_forward_hook(lambda _m, inputs, _out: seen.append(inputs[0].clone()))
    train_epoch(model, build_loss(config, model), build_optimizer(config, model),
                head(data.train, 80), batch_size=32, epoch=1)
    assert [len(x) for x in seen] == [32, 32, 16]  # the last batch is partial
    assert torch.equal(torch.cat(seen), normalize(data.train.images[:80]))


# --- determinism -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "changes",
    [{}, {"shuffle": True, "schedule": "cosine", "decay_mode": "decoupled", "weight_decay": 0.1},
     {"optimizer": "sgd", "implementation": "torch", "loss": "torch", "lr": 0.1, "momentum": 0.9}],
    ids=["exercise", "shuffle-cosine-adamw", "sgd"],
)
def test_same_config_gives_bit_identical_results(
    data: Cifar10, small: Small, changes: dict[str, Any]
) -> None:
    config = small(**changes)
    first, second = run(config, data), run(config, data)
    assert first.status == "ok"
    assert compared(first) == compared(second)


def test_shuffling_is_seeded_and_differs_from_stored_order(data: Cifar10, small: Small) -> None:
    shuffled = run(small(shuffle=True), data)
    assert compared(run(small(shuffle=True), data)) == compared(shuffled)
    stored = run(small(), data)
    assert shuffled.history.train_loss != stored.history.train_loss


def test_run_uses_the_first_train_size_and_test_size_images(data: Cifar10, small: Small) -> None:
    config = small(train_size=64, test_size=32)
    prefix = Cifar10(head(data.train, 64), head(data.test, 32), data.classes)
    assert compared(run(config, data)) == compared(run(config, prefix))


# --- evaluate ----------------------------------------------------------------------------------


@pytest.mark.parametrize("training", [True, False])
def test_evaluate_runs_in_eval_mode_without_autograd_and_restores_the_mode(
    data: Cifar10, training: bool
) -> None:
    torch.manual_seed(0)
    model = LeNet5().train(training)
    inside: list[tuple[bool, bool]] = []
    model.register_forward_hook(
        lambda m, _inputs, out: inside.append((m.training, torch.is_grad_enabled()
                                               or out.requires_grad)))
    evaluate(model, data.test)
    assert inside and all(state == (False, False) for state in inside)
    assert model.training is training
    assert all(p.grad is None for p in model.parameters())
    assert torch.is_grad_enabled()


def test_evaluate_returns_mean_cross_entropy_and_accuracy(data: Cifar10) -> None:
    torch.manual_seed(0)
    model = LeNet5()
    test = head(data.test, 128)
    loss, acc = evaluate(model, test, batch_size=50)  # 50 + 50 + 28: every image counts once
    with torch.no_grad():  # the same batches, so the same kernels: argmax ties break alike
        logits = torch.cat([model(normalize(test.images[i:i + 50])) for i in (0, 50, 100)])
    # float32 sums in another order: a few ulps of a loss near 2.3
    assert loss == pytest.approx(F.cross_entropy(logits, test.labels).item(), rel=1e-5)
    assert acc == (logits.argmax(1) == test.labels).sum().item() / 128
    with torch.no_grad():
        whole_logits = model(normalize(test.images))
    whole = evaluate(model, test, batch_size=128)
    assert whole[1] == (whole_logits.argmax(1) == test.labels).sum().item() / 128
    assert whole[0] == pytest.approx(loss, rel=1e-5)


# --- divergence --------------------------------------------------------------------------------

DIVERGING = {"decay_mode": "decoupled", "weight_decay": 1.0, "lr": 1e6}


def test_adamw_at_lr_1e6_and_wd_1_multiplies_weights_by_about_minus_1e6(
    data: Cifar10, small: Small
) -> None:
    """Why DIVERGING diverges: θ ← θ·(1 − lr·wd) − lr·m̂/(√v̂ + ε), and the Adam step is ≤ lr."""
    config = small(**DIVERGING)
    model = build_model(config, torch.device("cpu"))
    optimizer = build_optimizer(config, model)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    F.cross_entropy(model(normalize(data.train.images[:32])), data.train.labels[:32]).backward()
    optimizer.step()
    for name, p in model.named_parameters():
        factor = 1 - 1e6 if p.ndim > 1 else 1.0  # biases are not decayed
        assert ((p.detach() - factor * before[name]).abs() <= 1e6 * 1.001).all(), name
    grown = model.fc1.weight.detach().abs().max() / before["fc1.weight"].abs().max()
    assert grown > 1e4


def test_a_diverging_run_returns_status_diverged_naming_run_epoch_and_step(
    data: Cifar10, small: Small
) -> None:
    config = small(name="boom", **DIVERGING)
    result = run(config, data)
    assert result.status == "diverged"
    where = result.diverged_at
    assert where is not None and where.epoch == 1 and 2 <= where.step <= 8  # 1st loss finite
    assert result.error is not None and result.error.startswith("boom: ")
    assert f"epoch {where.epoch}, step {where.step}" in result.error
    assert result.train_acc is None and result.test_acc is None and result.best_epoch is None
    assert result.history.epochs == 0
    json.dumps(result.to_dict(), allow_nan=False)  # the result is plain, finite JSON
    assert compared(run(config, data)) == compared(result)  # it diverges at the same step


def test_the_first_bad_step_is_named_whatever_the_check_interval(
    data: Cifar10, small: Small
) -> None:
    config = small(**DIVERGING)
    steps = set()
    for check_every in (1, 3, 100):
        model = build_model(config, torch.device("cpu"))
        with pytest.raises(DivergenceError) as error:
            train_epoch(model, build_loss(config, model), build_optimizer(config, model),
                        head(data.train, 256), batch_size=32, epoch=1, check_every=check_every)
        assert not math.isfinite(error.value.value)
        assert str(error.value) == (f"loss became {error.value.value} at epoch 1, "
                                    f"step {error.value.step}")
        steps.add(error.value.step)
    assert len(steps) == 1


def test_divergence_in_a_later_epoch_keeps_the_finished_epochs(data: Cifar10) -> None:
    torch.manual_seed(0)
    model = LeNet5()
    calls = 0

    def nan_at_call_11(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        nonlocal calls
        calls += 1
        loss = F.cross_entropy(logits, y)
        return loss * math.nan if calls == 11 else loss

    history = History()
    with pytest.raises(DivergenceError) as error:  # 8 steps per epoch: call 11 = epoch 2, step 3
        fit(model, nan_at_call_11, torch.optim.Adam(model.parameters()), head(data.train, 256),
            head(data.test, 64), epochs=3, batch_size=32, history=history, log=lambda _: None)
    assert (error.value.epoch, error.value.step) == (2, 3)
    assert len(history.train_loss) == len(history.valid_acc) == 1


# --- twins and the two losses ------------------------------------------------------------------


def test_optreg_adam_and_ce_match_torch_adam_and_ce(data: Cifar10, small: Small) -> None:
    ours = run(small(name="adam"), data)
    theirs = run(small(name="torch-adam", loss="torch", implementation="torch"), data)
    for key in ("train_loss", "valid_loss"):
        # float32 training with other kernels: the rounding differences grow over the steps
        assert max_abs_diff(getattr(ours.history, key), getattr(theirs.history, key)) <= 2e-5


def test_train_loss_is_the_data_term_and_objective_adds_the_penalty(data: Cifar10) -> None:
    """With lr = 0 the weights stay put, so objective − loss is exactly the initial penalty."""
    config = RunConfig(decay_mode="loss", weight_decay=0.1 / 32)
    model = build_model(config, torch.device("cpu"))
    criterion = build_loss(config, model)
    assert isinstance(criterion, CrossEntropyLoss)
    train = head(data.train, 96)
    stats = train_epoch(model, criterion, torch.optim.SGD(model.parameters(), lr=0.0), train,
                        batch_size=32, epoch=1)
    with torch.no_grad():
        batch_losses = [F.cross_entropy(model(normalize(x)), y).item()
                        for x, y in iterate_batches(train.images, train.labels, 32)]
        penalty = 0.1 / (2 * 32) * sum((p**2).sum().item() for p in decayed(model.parameters()))
    assert stats.train_loss == pytest.approx(sum(batch_losses) / 3, rel=1e-6)
    assert stats.train_objective - stats.train_loss == pytest.approx(penalty, rel=1e-4)
    assert penalty > 1e-3  # large enough for the check above to mean something


def test_train_objective_exceeds_the_loss_only_with_l2_in_the_loss(
    data: Cifar10, small: Small
) -> None:
    in_loss = run(small(decay_mode="loss", weight_decay=0.1 / 32), data).history
    assert len(in_loss.train_objective) == 2
    assert all(o > t for o, t in zip(in_loss.train_objective, in_loss.train_loss, strict=True))
    in_optimizer = run(small(decay_mode="coupled", weight_decay=0.1 / 32), data).history
    assert in_optimizer.train_objective == in_optimizer.train_loss
    assert max_abs_diff(in_loss.train_loss, in_optimizer.train_loss) <= 2e-5  # float32 twins


# --- the result --------------------------------------------------------------------------------


def test_run_result_describes_the_run(data: Cifar10, small: Small) -> None:
    config = small(name="exercise")
    torch.set_num_threads(2)
    try:
        result = run(config, data, threads=1)
        assert torch.get_num_threads() == 2  # the caller's thread count is restored afterwards
    finally:
        torch.set_num_threads(1)
    assert (result.id, result.name, result.seed) == (config.run_id, "exercise", 0)
    assert result.config == config
    assert (result.status, result.error, result.diverged_at) == ("ok", None, None)
    assert result.train_acc is not None and 0.0 <= result.train_acc <= 1.0
    # Validating on the test split, the final test accuracy is the last validation accuracy.
    assert result.test_acc == result.history.valid_acc[-1]
    assert result.best_test_acc is None  # early stopping is measured with held-out validation
    assert result.best_epoch == result.history.best_epoch()
    assert len(result.history.train_s) == len(result.history.eval_s) == 2
    assert result.history.lr == [1e-3, 1e-3]
    assert result.train_s == pytest.approx(sum(result.history.train_s))
    assert result.eval_s >= sum(result.history.eval_s)
    assert result.wall_s >= result.train_s + sum(result.history.eval_s)
    assert result.train_img_per_s * result.train_s == pytest.approx(2 * 256)
    assert result.provenance["threads"] == 1
    assert result.provenance["torch"] == torch.__version__
    json.dumps(result.to_dict(), allow_nan=False)
    assert RunResult.from_dict(json.loads(json.dumps(result.to_dict()))) == result


# --- held-out validation and early stopping ----------------------------------------------------


def noisy_labels(data: Cifar10) -> Cifar10:
    """The training labels replaced by random ones: a model can only memorise them, so its
    validation loss (on held-out training images) rises after the first epochs."""
    labels = torch.randint(10, (len(data.train),), generator=torch.Generator().manual_seed(0))
    return Cifar10(Cifar10Split(data.train.images, labels), data.test, data.classes)


def test_held_out_validation_takes_the_last_training_images_and_never_trains_on_them(
    data: Cifar10, small: Small
) -> None:
    config = small(train_size=None, valid_size=96, epochs=1)
    seen: list[torch.Tensor] = []
    original = torch.nn.Conv2d.forward

    def spy(module: torch.nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
        if module.in_channels == 3 and module.training:
            seen.append(x.detach().clone())
        return original(module, x)

    torch.nn.Conv2d.forward = spy  # type: ignore[method-assign]
    try:
        result = run(config, data)
    finally:
        torch.nn.Conv2d.forward = original  # type: ignore[method-assign]
    trained = torch.cat(seen)
    n = len(data.train)
    assert torch.equal(trained, normalize(data.train.images[: n - 96]))  # all the rest, in order
    valid = normalize(data.train.images[n - 96 :])
    assert not (trained.flatten(1)[:, None] == valid.flatten(1)[None]).all(-1).any()
    with torch.no_grad():
        model = build_model(config, torch.device("cpu"))  # the same init: epoch-1 loss differs
    assert result.history.valid_loss[0] != evaluate(model, data.test)[0]


def test_with_held_out_validation_the_test_split_is_read_only_at_the_end(
    data: Cifar10, small: Small, monkeypatch: pytest.MonkeyPatch
) -> None:
    loop_module = importlib.import_module("optreg.training.loop")
    run_module = importlib.import_module("optreg.training.run")  # `run` is also a function

    reads: list[str] = []
    real = loop_module.evaluate
    test_images = data.test.images[:64]

    def spy(model: torch.nn.Module, split: Cifar10Split, **kw: Any) -> tuple[float, float]:
        reads.append("test" if split.images.data_ptr() == test_images.data_ptr() else "other")
        return real(model, split, **kw)

    monkeypatch.setattr(loop_module, "evaluate", spy)
    monkeypatch.setattr(run_module, "evaluate", spy)
    result = run(small(valid_size=64, test_size=64, epochs=3), data)
    # 3 validations, the final train accuracy, then the test split: final and best weights.
    assert reads == ["other"] * 4 + ["test", "test"]
    assert result.best_test_acc is not None


def test_best_epoch_weights_are_the_ones_whose_test_accuracy_is_reported(
    data: Cifar10, tmp_path: Any
) -> None:
    noisy = noisy_labels(data)
    config = RunConfig(train_size=64, valid_size=128, test_size=128, epochs=6, lr=3e-3)
    result = run(config, noisy, checkpoint=tmp_path / "ck.pt")
    best = result.best_epoch
    assert best is not None and best < config.epochs  # the validation loss rose again
    assert best == result.history.best_epoch()
    # The run stopped early at its best epoch has exactly those weights (constant schedule).
    stopped = run(config.replace(epochs=best), noisy, checkpoint=tmp_path / "stopped.pt")
    saved = torch.load(tmp_path / "ck.pt", weights_only=True)
    final_weights = torch.load(tmp_path / "stopped.pt", weights_only=True)["model"]
    for name, tensor in saved["best_weights"].items():
        assert torch.equal(tensor, final_weights[name]), name
    assert result.best_test_acc == stopped.test_acc
    assert result.best_test_acc != result.test_acc  # memorising the noise cost accuracy


# --- the other options of a run ----------------------------------------------------------------


def test_augmentation_changes_the_batches_deterministically_and_keeps_the_data_order(
    data: Cifar10, small: Small
) -> None:
    plain, augmented = run(small(), data), run(small(augment=True), data)
    assert compared(run(small(augment=True), data)) == compared(augmented)
    assert augmented.history.train_loss != plain.history.train_loss
    # Another seed draws other crops and flips (and another init).
    assert run(small(augment=True, seed=1), data).history.train_loss != \
        augmented.history.train_loss


def test_label_smoothing_reaches_the_training_loss_only(data: Cifar10, small: Small) -> None:
    model = build_model(small(), torch.device("cpu"))
    for loss in ("optreg", "torch"):
        criterion = build_loss(small(loss=loss, label_smoothing=0.2, implementation=loss), model)
        logits, y = torch.randn(8, 10), torch.randint(10, (8,))
        torch.testing.assert_close(criterion(logits, y),
                                   F.cross_entropy(logits, y, label_smoothing=0.2))
    smoothed, plain = run(small(label_smoothing=0.2, epochs=1), data), run(small(epochs=1), data)
    assert smoothed.history.valid_loss != plain.history.valid_loss  # it changes training


def test_cosine_schedule_is_recorded_per_epoch(data: Cifar10, small: Small) -> None:
    result = run(small(schedule="cosine", epochs=2), data)
    # 8 steps per epoch over 16: after epoch 1 the multiplier is ½(1 + cos(π/2)) = ½.
    assert result.history.lr == pytest.approx([5e-4, 0.0], abs=1e-12)


def test_trace_records_the_update_size_of_the_first_steps(data: Cifar10, small: Small) -> None:
    config = small(trace_steps=10, epochs=2)
    result = run(config, data)
    assert [len(v) for v in result.trace.values()] == [10, 10]
    assert result.trace["loss"][0] == pytest.approx(result.history.train_objective[0], rel=0.5)
    # Adam's first update is ±lr·sign(g) in every coordinate (ε aside): its RMS is lr.
    assert result.trace["update_rms"][0] == pytest.approx(1e-3, rel=1e-3)
    # Without bias correction it is lr·(1 − β₁)/√(1 − β₂) ≈ 3.16·lr, less where ε is not
    # negligible beside √(1 − β₂)·|g| (30× more often than beside |g|: a looser tolerance).
    uncorrected = run(small(trace_steps=1, bias_correction=False), data)
    assert uncorrected.trace["update_rms"][0] == pytest.approx(1e-3 * 0.1 / 0.001**0.5,
                                                               rel=1e-2)


def test_without_a_finite_validation_loss_there_is_no_best_epoch(data: Cifar10) -> None:
    """Held-out validation whose every loss was nan: no best weights, so no early-stopping
    accuracy, and the final measures still come."""
    from optreg.data.splits import make_splits
    from optreg.training.run import _final_evaluation, _RunState

    model = LeNet5()
    splits = make_splits(data, train_size=64, valid_size=32, test_size=32)
    state = _RunState(model, torch.optim.SGD(model.parameters(), lr=0.1), None, [], None,
                      keep_best=True)
    state.history = History([2.0], [2.0], [math.nan], [0.1], [1.0], [0.1], [0.1])
    state.keep_if_best(state.history)
    assert state.best_weights is None and state.history.best_epoch() is None
    measured = _final_evaluation(model, splits, state)
    assert "best_test_acc" not in measured and 0 <= measured["test_acc"] <= 1
