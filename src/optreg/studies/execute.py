"""Execute a study's configs with any executor, storing each result as it finishes.

config → run → result → report: this module fills the output folder (a claimed
:class:`~optreg.studies.output.StudyFolder`). Each finished run is written to
``runs/<id>.json`` (atomically) the moment it arrives, and ``results.json`` is rewritten, so an
interrupted study loses at most the epochs since each unfinished run's last checkpoint. Runs
already stored are not run again (a failed one is retried, from its checkpoint), and unfinished
ones continue from their checkpoints: the final results equal those of an uninterrupted study.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping, Sequence

from optreg.config import RunConfig, check_unique
from optreg.executors.base import Executor, Task
from optreg.progress import progress_bar
from optreg.results import RunResult, Study, StudyResult
from optreg.runtime import machine_info, now
from optreg.studies.output import StudyFolder


def execute_study(
    configs: Sequence[RunConfig],
    study: Study,
    folder: StudyFolder,
    executor: Executor,
    *,
    progress: bool = True,
    sources: Mapping[str, str] | None = None,
) -> StudyResult:
    """Run every config that has no stored result yet; return the study's results.

    Runs appear in the order of ``configs``. ``study`` is stored as given, plus the machine,
    start and end times. ``sources`` maps the SHA-256 of each student submission the configs
    name to its text, which travels with their tasks. The executor is closed at the end, also
    when interrupted.

    Raises:
        ConfigError: the same run (same id) appears twice.
        OutputError: a stored run file is damaged or belongs to another run.
    """
    check_unique([c.run_id for c in configs], "runs",
                 name=lambda run_id: next(c.name for c in configs if c.run_id == run_id))
    stored = {c.run_id: folder.stored_run(c) for c in configs}
    # Every stored run shows in results.json; a failed one (an exception, a dead worker) is
    # retried, from its checkpoint, and replaced by its new result.
    latest: dict[str, RunResult] = {i: r for i, r in stored.items() if r is not None}
    finished = {i for i, r in latest.items() if r.status != "failed"}
    for run_id in finished:  # left behind by a stop between storing a run and tidying up
        folder.remove_checkpoint(run_id)
    # A resumed study keeps its first start, and its wall time counts every session.
    previous = folder.stored_study()
    spent_before = (previous.wall_s or 0.0) if previous else 0.0
    study = study.replace(machine=machine_info(),
                          started_at=previous.started_at if previous and previous.started_at
                          else now())
    sources = sources or {}
    pending = [Task(c.to_dict(), str(folder.checkpoint_path(c.run_id)),
                    sources.get(c.custom_sha256) if c.custom_sha256 else None)
               for c in configs if c.run_id not in finished]
    if finished:
        print(f"resume: {len(finished)} of {len(configs)} runs already finished in "
              f"{folder.path}", file=sys.stderr)
    started = time.perf_counter()

    def results(**changes: object) -> StudyResult:
        so_far = study.replace(wall_s=spent_before + time.perf_counter() - started, **changes)
        return StudyResult(so_far, tuple(latest[c.run_id] for c in configs
                                         if c.run_id in latest))

    folder.write_results(results())
    bar = progress_bar("runs", len(configs), enabled=progress, done=len(finished), unit="run",
                       leave=True)
    try:
        for result in executor.map(pending):
            folder.save_run(result)
            latest[result.id] = result
            folder.write_results(results())
            if result.status != "failed":  # keep it: a resume retries the run from there
                folder.remove_checkpoint(result.id)
            if not result.ok:
                print(f"{result.status}: {result.error}", file=sys.stderr)
            bar.update(1)
    finally:
        bar.close()
        executor.close()
    final = results(finished_at=now())
    folder.write_results(final)
    folder.tidy()
    return final
