"""The report package on canned results: aggregation, twins, tables, figures, HTML/Markdown."""

from __future__ import annotations

import copy
import dataclasses
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from optreg.config import RunConfig
from optreg.report import (
    best_settings,
    build_report,
    loss_curves_png,
    loss_panels,
    render_markdown,
    results_tables,
    save_heatmaps,
    save_loss_curves,
    summarize,
    summary_table,
    sweep_grid,
    to_markdown,
    to_text,
    twin_deltas,
    write_report,
)
from optreg.report.tables import format_stat
from optreg.results import DivergedAt, History, RunResult, Study, StudyResult

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
EPOCHS = 10
SEEDS = (0, 1)

# name → (family whose curves it shares, tiny offset so twins differ by < 1e-3, decay_mode)
SCENARIOS = {
    "sgd": ("sgd", 0.0, "none"),
    "torch-adam": ("adam", 0.0, "none"),
    "adam": ("adam", 2e-4, "none"),
    "adam-l2-loss": ("l2", 0.0, "loss"),
    "adam-l2": ("l2", 1e-4, "coupled"),
    "adamw": ("adamw", 0.0, "decoupled"),
    "torch-adam-l2": ("l2", 3e-4, "coupled"),
    "torch-adamw": ("adamw", 5e-5, "decoupled"),
    "torch-adam-wd": ("wd", 0.0, "coupled"),
}
FAMILY = {
    "sgd": (1.0, 0.6),
    "adam": (0.8, 0.5),
    "l2": (0.85, 0.45),
    "adamw": (0.82, 0.48),
    "wd": (1.2, 0.7),
}
MATCHES = [
    ["torch-adam", "adam"],
    ["adam-l2-loss", "adam-l2", "torch-adam-l2"],
    ["adamw", "torch-adamw"],
]
PANELS = {
    "SGD vs Adam": ["sgd", "torch-adam", "adam"],
    "L2: loss vs optimizer": ["adam-l2-loss", "adam-l2", "torch-adam-l2", "torch-adam-wd"],
    "Decoupled decay": ["adamw", "torch-adamw"],
}


def curves(family: str, seed: int, offset: float, epochs: int = EPOCHS) -> dict[str, list]:
    """Decreasing train loss; validation loss U-shaped (overfits) — deterministic per seed."""
    floor, scale = FAMILY[family]
    rng = np.random.default_rng(seed)
    e = np.arange(1, epochs + 1)
    train = floor + scale * np.exp(-e / 3) + 0.01 * rng.standard_normal(epochs) + offset
    valid = floor + 0.2 + scale * np.exp(-e / 2.5) + 0.004 * (e - 4) ** 2 + offset
    valid = valid + 0.01 * rng.standard_normal(epochs)
    acc = 1 - valid / 3
    return {"train_loss": train.tolist(), "valid_loss": valid.tolist(), "valid_acc": acc.tolist()}


PROVENANCE = {"optreg": "0.2.0", "torch": "2.13.0", "python": "3.11.7", "device": "cpu",
              "cpu": "Test CPU", "isa": "AVX512", "threads": 1, "platform": "Linux-test",
              "finished_at": "2026-11-29T19:00:00+00:00"}


def make_run(
    name: str,
    seed: int,
    *,
    family: str = "adam",
    offset: float = 0.0,
    decay_mode: str = "none",
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    test_acc: float | None = None,
) -> RunResult:
    """A realistic ok run, as the training code returns it."""
    if decay_mode != "none" and weight_decay == 0.0:
        weight_decay = 0.1 / 32
    config = RunConfig(name=name, seed=seed, epochs=EPOCHS, lr=lr, weight_decay=weight_decay,
                       decay_mode=decay_mode)  # type: ignore[arg-type]
    values = curves(family, seed, offset)
    if test_acc is not None:  # validation is the test split here: the last epoch's is the test's
        values["valid_acc"] = [*values["valid_acc"][:-1], test_acc]
    objective = [v + (0.05 if decay_mode == "loss" else 0.0) for v in values["train_loss"]]
    history = History(train_loss=values["train_loss"], train_objective=objective,
                      valid_loss=values["valid_loss"], valid_acc=values["valid_acc"],
                      train_s=[10.0] * EPOCHS, eval_s=[2.0] * EPOCHS, lr=[lr] * EPOCHS)
    rng = np.random.default_rng(1000 + seed + 17 * len(name))
    return RunResult(
        id=config.run_id, config=config, status="ok", history=history,
        train_acc=0.6 + 0.05 * rng.random(),
        test_acc=0.5 + 0.05 * rng.random() if test_acc is None else test_acc,
        wall_s=120 + 10 * rng.random(), train_s=100.0,
        eval_s=20.0, train_img_per_s=5000 + 100 * rng.random(), provenance=dict(PROVENANCE),
    )


def diverge(run: RunResult, epoch: int, step: int) -> RunResult:
    """The run as if it diverged during ``epoch`` (histories stop before it)."""
    keep = epoch - 1
    history = History(**{k: v[:keep] for k, v in run.history.to_dict().items()})
    return dataclasses.replace(run, status="diverged", error=f"{run.name}: loss is nan",
                               diverged_at=DivergedAt(epoch, step), train_acc=None,
                               test_acc=None, history=history)


def fail(run: RunResult, error: str) -> RunResult:
    return RunResult.failed(run.config, error, "Traceback ...")


def study_of(runs: list[RunResult], **study: Any) -> StudyResult:
    return StudyResult(Study(**{"name": "test", "kind": "seed", **study}), tuple(runs))


def seed_results() -> StudyResult:
    """9 scenarios × 2 seeds; torch-adam-wd seed 1 diverged in epoch 3."""
    runs = []
    for seed in SEEDS:
        for name, (family, offset, mode) in SCENARIOS.items():
            run = make_run(name, seed, family=family, offset=offset, decay_mode=mode)
            if name == "torch-adam-wd" and seed == 1:
                run = diverge(run, 3, 4000)
            runs.append(run)
    return study_of(
        runs, name="seed", kind="seed",
        settings={"epochs": EPOCHS, "batch_size": 32, "seeds": list(SEEDS)},
        execution={"device": "cpu", "executor": "local", "workers": 2, "threads": 1},
        matches=MATCHES, panels=PANELS,
        descriptions={"sgd": "torch SGD (lr 0.1, momentum 0.9) + torch CE",
                      "adam": "optreg Adam + optreg CE <b>bold</b>"},
        machine={"cpu": "Test CPU", "isa": "AVX512", "cores": 2, "torch": "2.13.0",
                 "python": "3.11.7", "platform": "Linux-test"},
        started_at="2026-11-29T18:00:00+00:00", finished_at="2026-11-29T19:00:00+00:00",
        wall_s=812.3,
    )


LRS = (1e-4, 1e-3, 1e-2)
WDS = (1e-5, 1e-4, 1e-3)
MODES = ("coupled", "decoupled")


def sweep_accuracy(mode: str, lr: float, wd: float, seed: int) -> float:
    """A smooth surface whose optimum sits elsewhere for coupled and decoupled decay."""
    best_lr, best_wd = (1e-3, 1e-5) if mode == "coupled" else (1e-3, 1e-3)
    d = (np.log10(lr) - np.log10(best_lr)) ** 2 + 0.5 * (np.log10(wd) - np.log10(best_wd)) ** 2
    return float(0.6 - 0.03 * d + 0.004 * seed)


def sweep_results(decays: dict[str, tuple[float, ...]] | None = None) -> StudyResult:
    """3 lr × 3 wd × 2 modes × 2 seeds; coupled lr 1e-2 wd 1e-4 seed 1 diverged."""
    decays = decays or {m: WDS for m in MODES}
    runs = []
    for mode in MODES:
        for wd in decays[mode]:
            for lr in LRS:
                for seed in SEEDS:
                    run = make_run(f"{mode}-lr{lr:g}-wd{wd:g}", seed, decay_mode=mode, lr=lr,
                                   weight_decay=wd, test_acc=sweep_accuracy(mode, lr, wd, seed))
                    if (mode, lr, wd, seed) == ("coupled", 1e-2, 1e-4, 1):
                        run = diverge(run, 2, 1500)
                    runs.append(run)
    shared = len(set(decays.values())) == 1
    grid = {"lr": list(LRS), "weight_decay": list(WDS) if shared else
            {m: list(v) for m, v in decays.items()}, "mode": list(MODES), "seeds": list(SEEDS)}
    return study_of(runs, name="sweep", kind="sweep", settings={"epochs": EPOCHS}, grid=grid)


def runs_named(results: StudyResult, name: str) -> list[RunResult]:
    return [r for r in results.runs if r.name == name]


def is_png(path: Path) -> bool:
    data = path.read_bytes()
    return data.startswith(PNG_SIGNATURE) and b"IEND" in data[-16:]


@pytest.fixture(scope="module")
def seed_res() -> StudyResult:
    return seed_results()


@pytest.fixture(scope="module")
def sweep_res() -> StudyResult:
    return sweep_results()


@pytest.fixture(scope="module")
def seed_report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    results = seed_results()
    first = results.runs[0]
    hostile = dataclasses.replace(first, config=first.config.replace(name="sgd<script>alert(1)&"))
    return write_report(StudyResult(results.study, (hostile, *results.runs[1:])),
                        tmp_path_factory.mktemp("seed"))


# --- aggregation ------------------------------------------------------------------------------


def test_summary_rows_in_first_appearance_order(seed_res: StudyResult) -> None:
    rows = summarize(seed_res)
    assert [r.name for r in rows] == list(SCENARIOS)
    assert all(r.seeds == SEEDS for r in rows)


def test_means_and_sample_stds_match_numpy(seed_res: StudyResult) -> None:
    row = {r.name: r for r in summarize(seed_res)}["adam"]
    runs = runs_named(seed_res, "adam")
    for stat, values in [
        (row.train_acc, [r.train_acc for r in runs]),
        (row.test_acc, [r.test_acc for r in runs]),
        (row.final_train_loss, [r.history.train_loss[-1] for r in runs]),
        (row.final_valid_loss, [r.history.valid_loss[-1] for r in runs]),
        (row.wall_s, [r.wall_s for r in runs]),
        (row.img_per_s, [r.train_img_per_s for r in runs]),
    ]:
        assert stat is not None and stat.n == 2
        assert stat.mean == pytest.approx(np.mean(values))
        assert stat.std == pytest.approx(np.std(values, ddof=1))
    epochs = [int(np.argmin(r.history.valid_loss)) + 1 for r in runs]
    assert row.best_epoch is not None and row.best_epoch.mean == pytest.approx(np.mean(epochs))


def test_best_epoch_is_one_based_and_skips_nan() -> None:
    def best(valid: list[float]) -> int | None:
        return History(valid_loss=valid).best_epoch()

    assert best([3.0, 2.0, 1.5, 1.7]) == 3
    assert best([float("nan"), 2.0, 2.5]) == 2
    assert best([1.0, 1.0]) == 1
    assert best([]) is None


def test_single_seed_has_no_std(seed_res: StudyResult) -> None:
    one = StudyResult(seed_res.study, tuple(r for r in seed_res.runs if r.seed == 0))
    row = summarize(one)[0]
    assert row.test_acc is not None and row.test_acc.std is None and row.test_acc.n == 1
    assert "±" not in to_text(summary_table(summarize(one)))


def test_diverged_run_is_reported_and_left_out_of_means(seed_res: StudyResult) -> None:
    row = {r.name: r for r in summarize(seed_res)}["torch-adam-wd"]
    assert row.n_ok == 1 and row.n_runs == 2
    assert row.status == "seed 1: diverged (epoch 3, step 4000)"
    ok = [r for r in runs_named(seed_res, "torch-adam-wd") if r.ok]
    assert row.test_acc is not None and row.test_acc.std is None
    assert row.test_acc.mean == pytest.approx(ok[0].test_acc)


def test_failed_and_all_diverged_scenarios() -> None:
    failed = fail(make_run("bad<x>", 0), "RuntimeError: out of memory\nTraceback ...")
    lone = diverge(make_run("lone", 0), 1, 12)
    rows = summarize(study_of([failed, lone]))
    assert rows[0].status == "failed: bad<x>: RuntimeError: out of memory"
    assert rows[0].test_acc is None and rows[0].best_epoch is None
    assert rows[1].status == "diverged (epoch 1, step 12)"
    text = to_text(summary_table(rows))
    assert "—" in text and "0/1" in text


def test_empty_runs_raise_value_error(tmp_path: Path) -> None:
    empty = study_of([])
    with pytest.raises(ValueError, match="no finished run"):
        summarize(empty)
    with pytest.raises(ValueError, match="no finished run"):
        write_report(empty, tmp_path / "empty")
    assert not (tmp_path / "empty").exists()


# --- twins ------------------------------------------------------------------------------------


def test_twin_deltas_match_numpy(seed_res: StudyResult) -> None:
    deltas = {(d.a, d.b): d for d in twin_deltas(seed_res)}
    assert set(deltas) == {
        ("torch-adam", "adam"),
        ("adam-l2-loss", "adam-l2"),
        ("adam-l2-loss", "torch-adam-l2"),
        ("adam-l2", "torch-adam-l2"),
        ("adamw", "torch-adamw"),
    }
    expected = max(
        np.max(np.abs(np.subtract(getattr(a.history, k), getattr(b.history, k))))
        for a, b in zip(
            runs_named(seed_res, "torch-adam"), runs_named(seed_res, "adam"), strict=True
        )
        for k in ("train_loss", "valid_loss")
    )
    d = deltas[("torch-adam", "adam")]
    assert d.max_delta == pytest.approx(expected) and d.max_delta == pytest.approx(2e-4)
    assert d.matched and d.seeds == SEEDS and d.epochs == EPOCHS


def test_matches_column_within_tolerance(seed_res: StudyResult) -> None:
    rows = {r.name: r for r in summarize(seed_res)}
    assert rows["adam"].matches == "= torch-adam (max Δ 2.0e-04)"
    assert rows["adam-l2"].matches == (
        "= adam-l2-loss (max Δ 1.0e-04); = torch-adam-l2 (max Δ 2.0e-04)"
    )
    assert rows["sgd"].matches == "" and rows["torch-adam-wd"].matches == ""


def test_matches_column_outside_tolerance(seed_res: StudyResult) -> None:
    rows = {r.name: r for r in summarize(seed_res, tol=1e-4)}
    assert rows["adam"].matches == "≠ torch-adam (max Δ 2.0e-04)"
    assert rows["adamw"].matches == "= torch-adamw (max Δ 5.0e-05)"
    results = copy.deepcopy(seed_res)
    for r in runs_named(results, "torch-adamw"):
        r.history.valid_loss[:] = [v + 0.21 for v in r.history.valid_loss]
    assert {r.name: r for r in summarize(results)}["adamw"].matches == (
        "≠ torch-adamw (max Δ 0.21)"
    )


def test_twin_of_different_length_is_not_a_match(seed_res: StudyResult) -> None:
    runs = list(seed_res.runs)
    index = runs.index(runs_named(seed_res, "adam")[1])
    runs[index] = diverge(runs[index], 4, 5000)
    results = StudyResult(seed_res.study, tuple(runs))
    (d,) = [d for d in twin_deltas(results) if d.b == "adam"]
    assert not d.matched and d.note == "10 vs 3 epochs"
    assert {r.name: r for r in summarize(results)}["adam"].matches.startswith("≠ torch-adam (")


# --- tables -----------------------------------------------------------------------------------


def test_text_table_cells(seed_res: StudyResult) -> None:
    rows = summarize(seed_res)
    text = to_text(summary_table(rows))
    lines = text.splitlines()
    assert lines[0].startswith("scenario") and "matches" in lines[0]
    assert set(lines[1]) <= {"-", " "}
    adam = next(line for line in lines if line.startswith("adam "))
    row = {r.name: r for r in rows}["adam"]
    assert row.test_acc is not None and row.test_acc.std is not None
    assert f"{100 * row.test_acc.mean:.2f} ± {100 * row.test_acc.std:.2f}" in adam
    assert f"{row.final_valid_loss.mean:.4f}" in adam  # type: ignore[union-attr]
    assert "= torch-adam (max Δ 2.0e-04)" in adam
    assert "seed 1: diverged (epoch 3, step 4000)" in text
    # aligned: the right-aligned test-acc column ends at the same offset in every row
    end = lines[0].index("test acc (%)") + len("test acc (%)")
    col_end = [line[:end].rstrip()[-1:] for line in lines[2:]]
    assert all(c.isdigit() or c == "—" for c in col_end)


def test_markdown_table_well_formed(seed_res: StudyResult) -> None:
    md = to_markdown(summary_table(summarize(seed_res)))
    lines = md.strip().splitlines()
    assert len(lines) == 2 + len(SCENARIOS)
    pipes = {len(re.findall(r"(?<!\\)\|", line)) for line in lines}
    assert pipes == {12}  # 11 columns
    assert re.fullmatch(r"\|(:?---:?\|)+", lines[1])
    assert "| torch-adam-wd | 1/2 |" in md


def test_sweep_tables(sweep_res: StudyResult) -> None:
    (t1, best), (t2, full) = results_tables(sweep_res)
    assert (t1, t2) == ("Best settings per mode", "All settings")
    assert [r[:3] for r in best.rows] == [
        ("coupled", "1e-3", "1e-5"),
        ("decoupled", "1e-3", "1e-3"),
    ]
    assert len(full.rows) == 18
    assert full.rows[5][:3] == ("coupled", "1e-2", "1e-4")
    assert full.rows[5][5:] == ("1/2", "diverged 1/2")


# --- sweeps -----------------------------------------------------------------------------------


def test_sweep_best_cell_is_the_argmax(sweep_res: StudyResult) -> None:
    grid = sweep_grid(sweep_res)
    assert grid.modes == MODES and grid.lrs == LRS
    assert grid.weight_decays == {m: WDS for m in MODES} and grid.shared_decays
    best = {b.mode: b for b in best_settings(grid)}
    for mode in MODES:
        # independent: mean test accuracy per (wd, lr) from the raw runs, any non-ok seed → NaN
        acc = np.full((len(WDS), len(LRS)), np.nan)
        for i, wd in enumerate(WDS):
            for j, lr in enumerate(LRS):
                runs = [
                    r
                    for r in sweep_res.runs
                    if (r.config.decay_mode, r.config.lr, r.config.weight_decay) == (mode, lr, wd)
                ]
                if all(r.ok for r in runs):
                    acc[i, j] = np.mean([r.test_acc for r in runs])
        i, j = np.unravel_index(np.nanargmax(acc), acc.shape)
        b = best[mode]
        assert (b.lr, b.weight_decay) == (LRS[j], WDS[i])
        assert b.test_acc.mean == pytest.approx(acc[i, j]) and b.n_seeds == 2
        values = [r.test_acc for r in sweep_res.runs if r.name == b.cell.runs[0].name]
        assert b.test_acc.std == pytest.approx(np.std(values, ddof=1))
    assert not grid.cell("coupled", 1e-2, 1e-4).usable  # type: ignore[union-attr]


def test_the_best_setting_is_chosen_on_validation_not_on_test(sweep_res: StudyResult) -> None:
    # Held-out validation: make the test split prefer another cell than validation does.
    runs = []
    for r in sweep_res.runs:
        if r.config.decay_mode == "decoupled":
            flipped = 0.9 - r.test_acc  # test accuracy now falls where validation's rises
            r = dataclasses.replace(r, test_acc=flipped)
        runs.append(r)
    results = StudyResult(sweep_res.study, tuple(runs))
    grid = sweep_grid(results)
    best = {b.mode: b for b in best_settings(grid)}["decoupled"]
    valid, test = grid.accuracy("decoupled", split="valid"), grid.accuracy("decoupled")
    assert best.valid_acc.mean == pytest.approx(np.nanmax(valid))
    assert best.test_acc.mean < np.nanmax(test)  # the test split's favourite was not chosen
    (_, table), _ = results_tables(results)
    row = next(r for r in table.rows if r[0] == "decoupled")
    assert row[3] == format_stat(best.valid_acc, 2, scale=100)
    assert row[4] == format_stat(best.test_acc, 2, scale=100)


def test_each_mode_may_have_its_own_weight_decays(tmp_path: Path) -> None:
    decays = {"coupled": WDS, "decoupled": (1e-2, 1e-1, 1.0)}
    results = sweep_results(decays)
    grid = sweep_grid(results)
    assert grid.weight_decays == decays and not grid.shared_decays
    assert grid.accuracy("decoupled").shape == (3, 3)
    assert {b.mode: b.weight_decay for b in best_settings(grid)}["decoupled"] in decays[
        "decoupled"]
    (_, _), (_, full) = results_tables(results)
    assert [r[2] for r in full.rows if r[0] == "decoupled"][::3] == ["1e-2", "0.1", "1"]
    assert is_png(save_heatmaps(results, tmp_path / "heat.png"))


# --- figures ----------------------------------------------------------------------------------


def test_loss_panels_default_and_declared(seed_res: StudyResult) -> None:
    assert loss_panels(seed_res) == [(t, m) for t, m in PANELS.items()]
    bare = StudyResult(Study("bare", "seed"), seed_res.runs)
    panels = dict(loss_panels(bare))
    assert list(panels) == [
        "decay mode: none",
        "decay mode: loss",
        "decay mode: coupled",
        "decay mode: decoupled",
    ]
    partial = StudyResult(Study("p", "seed", panels={"A": ["adam", "nope"], "B": ["nope"]}),
                          seed_res.runs)
    got = loss_panels(partial)
    assert got[0] == ("A", ["adam"]) and got[1][0] == "Other" and len(got) == 2


def test_figures_are_pngs(tmp_path: Path, sweep_res: StudyResult) -> None:
    single = study_of([make_run("adam", 0)], name="one", kind="train")
    path = save_loss_curves(single, tmp_path / "one.png")
    assert path == tmp_path / "one.png" and is_png(path) and path.stat().st_size > 10_000
    heat = save_heatmaps(sweep_res, tmp_path / "heat.png")
    assert is_png(heat) and heat.stat().st_size > 20_000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["heat.png", "one.png"]  # no temp files


def test_loss_curves_of_only_stopped_runs() -> None:
    runs = [diverge(make_run("x", 0), 3, 9), diverge(make_run("x", 1), 1, 2)]
    assert loss_curves_png(study_of(runs)).startswith(PNG_SIGNATURE)


# --- the report -------------------------------------------------------------------------------


def test_seed_report_files(seed_report: dict[str, Path]) -> None:
    assert set(seed_report) == {"loss_curves", "markdown", "html"}
    png = seed_report["loss_curves"]
    assert png.name == "loss_curves.png" and is_png(png) and png.stat().st_size > 50_000
    assert sorted(p.name for p in png.parent.iterdir()) == [
        "loss_curves.png",
        "report.html",
        "report.md",
    ]


def test_markdown_report(seed_report: dict[str, Path]) -> None:
    md = seed_report["markdown"].read_text(encoding="utf-8")
    assert md.startswith("# optreg report: seed\n")
    assert "![Train and validation loss per epoch of every scenario](loss_curves.png)" in md
    assert "## Twins" in md and "torch-adam = adam: match; max \\|Δ\\| 2.0e-04" in md
    assert "<script>" not in md and "\\<script\\>" in md and "\\<b\\>bold" in md
    assert "Test CPU" in md and "| workers | 2 |" in md
    assert "## Settings" in md and "## Execution" in md


def test_html_is_self_contained_and_escaped(seed_report: dict[str, Path]) -> None:
    page = seed_report["html"].read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert page.count("data:image/png;base64,") == 1
    assert "href=" not in page
    assert re.findall(r'src="(?!data:image/png;base64,)', page) == []
    assert "<script" not in page
    assert "sgd&lt;script&gt;alert(1)&amp;" in page and "&lt;b&gt;bold&lt;/b&gt;" in page
    assert "torch-adam-wd" in page and "diverged (epoch 3, step 4000)" in page


def test_sweep_report(tmp_path: Path, sweep_res: StudyResult) -> None:
    paths = write_report(sweep_res, tmp_path)
    assert set(paths) == {"loss_curves", "heatmaps", "markdown", "html"}
    assert all(is_png(paths[k]) for k in ("loss_curves", "heatmaps"))
    md = paths["markdown"].read_text(encoding="utf-8")
    assert "## Best settings per mode" in md and "(heatmaps.png)" in md
    assert "| coupled | 1e-3 | 1e-5 |" in md
    assert paths["html"].read_text(encoding="utf-8").count("data:image/png;base64,") == 2


def test_report_of_a_single_run(tmp_path: Path) -> None:
    single = study_of([make_run("solo", 0)], name="train", kind="train")
    paths = write_report(single, tmp_path / "new" / "dir")
    md = paths["markdown"].read_text(encoding="utf-8")
    assert "(kind train)" in md and "| solo | 1 |" in md
    assert is_png(paths["loss_curves"])


def test_held_out_validation_shows_the_best_epoch_test_accuracy() -> None:
    run = make_run("adam", 0)
    held = dataclasses.replace(run, config=run.config.replace(valid_size=5000),
                               best_test_acc=0.512)
    rows = summarize(study_of([held]))
    table = summary_table(rows)
    assert "best-epoch test acc (%)" in table.headers
    assert "51.20" in to_text(table)
    title, blocks = build_report(study_of([held]), figures={})
    assert "held out" in render_markdown(title, blocks)
    assert "best-epoch" not in to_text(summary_table(summarize(study_of([run]))))


def test_build_report_is_pure(seed_res: StudyResult) -> None:
    before = copy.deepcopy(seed_res.to_dict())
    title, blocks = build_report(seed_res, figures={})
    assert seed_res.to_dict() == before
    assert render_markdown(title, blocks) == render_markdown(*build_report(seed_res, figures={}))
    assert "loss_curves.png" not in render_markdown(title, blocks)


def test_report_and_results_import_neither_matplotlib_nor_torch() -> None:
    """A report renders from results.json on a machine without torch: importing the report and
    the results must not import it (nor matplotlib, until a figure is drawn)."""
    code = (
        "import sys, optreg.report, optreg.results; "
        "assert 'torch' not in sys.modules, 'torch imported'; "
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_failed_run_is_listed_and_escaped(tmp_path: Path) -> None:
    failed = fail(make_run("x<&>", 0), "boom <b>")
    paths = write_report(study_of([failed]), tmp_path)
    page = paths["html"].read_text(encoding="utf-8")
    assert "x&lt;&amp;&gt;" in page and "failed: x&lt;&amp;&gt;: boom &lt;b&gt;" in page
    assert is_png(paths["loss_curves"])


def test_overfitting_and_step_size_sections(tmp_path: Path) -> None:
    runs = []
    for name, rise in (("none", 0.3), ("l2", 0.0)):
        run = make_run(name, 0)
        valid = [v + rise * max(0, e - 5) / 5 for e, v in enumerate(run.history.valid_loss)]
        history = dataclasses.replace(run.history, valid_loss=valid)
        runs.append(dataclasses.replace(
            run, config=run.config.replace(valid_size=100, trace_steps=3), history=history,
            best_test_acc=0.5,
            trace={"loss": [2.3, 2.2, 2.1], "update_rms": [1e-3, 2e-3, 3e-3]}))
    results = study_of(runs)
    titles = [title for title, _ in results_tables(results)]
    assert titles == ["Results", "Overfitting", "Effective step ‖Δθ‖_rms / lr"]
    (_, _), (_, gaps), (_, steps) = results_tables(results)
    gap = {row[0]: row for row in gaps.rows}
    expected = runs[0].history.valid_loss[-1] - runs[0].history.train_loss[-1]
    assert gap["none"][1] == f"{expected:.4f}"
    for run in runs:  # how far the validation loss rose after its lowest epoch
        valid = run.history.valid_loss
        assert gap[run.name][2] == f"{valid[-1] - min(valid):.4f}"
    assert float(gap["none"][2]) > float(gap["l2"][2]) + 0.2
    assert steps.rows[0] == ("none", "1", "2")  # update_rms / lr at steps 1 and 2
    paths = write_report(results, tmp_path)
    assert {"gap_curves", "step_sizes"} <= set(paths)
    assert is_png(paths["gap_curves"]) and is_png(paths["step_sizes"])
    md = paths["markdown"].read_text(encoding="utf-8")
    assert "(gap_curves.png)" in md and "(step_sizes.png)" in md
