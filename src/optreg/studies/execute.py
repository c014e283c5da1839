"""Execute a study's configs with any executor, storing each result as it finishes.

config → run → result → report: this module owns the output folder. Each finished run is
written to ``runs/<id>.json`` (atomically) the moment it arrives, and ``results.json`` is
rewritten, so an interrupted study loses at most the epochs since each unfinished run's last
checkpoint. With ``resume=True`` runs already stored are not run again, and unfinished ones
continue from their checkpoints; the final results equal those of an uninterrupted study.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from optreg import results as store
from optreg.config import ConfigError, RunConfig
from optreg.executors.base import Executor, Task
from optreg.runtime import machine_info, now


class OutputExistsError(FileExistsError):
    """The output folder holds another study's results and ``resume`` was not asked for."""


def execute_study(
    configs: list[RunConfig],
    study: dict[str, Any],
    out_dir: str | Path,
    executor: Executor,
    *,
    resume: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Run every config not finished yet; return ``{"study": ..., "runs": [...]}``.

    Runs appear in the order of ``configs``. ``study`` is stored as given, plus the machine,
    start and end times.
    """
    out_dir = Path(out_dir)
    ids = [c.run_id for c in configs]
    duplicates = sorted({c.name for c in configs if ids.count(c.run_id) > 1})
    if duplicates:
        raise ConfigError(f"the same run appears twice: {', '.join(duplicates)}")
    _claim(out_dir, resume)
    stored = store.load_finished(out_dir, ids) if resume else {}
    # A failed run (an exception, a dead worker) is retried on resume, from its checkpoint.
    finished = {i: r for i, r in stored.items() if r.get("status") != "failed"}
    study = {**study, "machine": machine_info(), "started_at": now()}
    pending = [
        Task(c.to_dict(), str(store.checkpoint_path(out_dir, c.run_id)))
        for c in configs
        if c.run_id not in finished
    ]
    if finished:
        print(f"resume: {len(finished)} of {len(configs)} runs already finished in {out_dir}",
              file=sys.stderr)

    def ordered() -> list[dict[str, Any]]:
        return [finished[i] for i in ids if i in finished]

    store.write_results(out_dir, study, ordered())
    started = time.perf_counter()
    bar = _runs_bar(len(configs), len(finished), progress)
    try:
        for result in executor.map(pending):
            store.save_run(out_dir, result)
            finished[result["id"]] = result
            store.write_results(out_dir, study, ordered())
            if result["status"] != "failed":  # keep it: --resume retries the run from there
                with contextlib.suppress(FileNotFoundError):
                    store.checkpoint_path(out_dir, result["id"]).unlink()
            if result["status"] != "ok":
                print(f"{result['status']}: {result['error']}", file=sys.stderr)
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
        executor.close()
    study["finished_at"] = now()
    study["wall_s"] = time.perf_counter() - started
    store.write_results(out_dir, study, ordered())
    checkpoints = out_dir / store.CHECKPOINTS_DIR
    if checkpoints.is_dir() and not any(checkpoints.iterdir()):
        shutil.rmtree(checkpoints)
    return {"study": study, "runs": ordered()}


def _claim(out_dir: Path, resume: bool) -> None:
    """Refuse to mix a new study into a folder that holds results, unless resuming."""
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputExistsError(f"--out {out_dir} exists and is not a folder")
    if _holds_results(out_dir) and not resume:
        raise OutputExistsError(
            f"{out_dir} already holds results; add --resume to continue that study, "
            "or choose another --out"
        )
    out_dir.mkdir(parents=True, exist_ok=True)


def _holds_results(out_dir: Path) -> bool:
    """Finished runs, checkpoints, or a results.json listing runs (or unreadable).

    A results.json without runs (a study stopped before any run finished or checkpointed,
    e.g. by a data error) holds nothing to protect or resume.
    """
    if (out_dir / store.RUNS_DIR).exists() or (out_dir / store.CHECKPOINTS_DIR).exists():
        return True
    results = out_dir / store.RESULTS_FILE
    if not results.exists():
        return False
    try:
        data = store.read_json(results)
    except ValueError:
        return True  # unreadable: not ours to overwrite
    return not isinstance(data, dict) or bool(data.get("runs"))


def _runs_bar(total: int, done: int, enabled: bool):
    if not (enabled and sys.stderr.isatty()):
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=done, desc="runs", unit="run", dynamic_ncols=True)
