"""Studies from Python in a few lines — the same functions the command line calls.

    >>> import optreg
    >>> result = optreg.run_study("seed", data_dir="~/data", epochs=2, train_size=5000)
    >>> result.to_dataframe()                      # doctest: +SKIP

:func:`run_study` runs a named study (``seed``, ``decoupling``, …; :data:`STUDIES`),
:func:`run_sweep` a grid, :func:`train` one run. Each takes the study's own options (those of its
preset function, e.g. :func:`optreg.studies.seed_study`: seeds, epochs, sizes, …) and the
execution options of :class:`Execution` (data, device, output folder, resume, executor, workers,
threads, …), with the same defaults and the same validation as the command line, which passes
only the flags the user gave. Every default lives in one place: the preset's signature, the
:class:`~optreg.config.RunConfig` fields, or :class:`Execution`.

What a study does, in order (:func:`execute`): check every option and every optional part it
needs (Ray, TensorBoard) → find (or download) the data, fingerprint it and load it once,
checking each run's split sizes → fix the threads per run → claim the output folder (lock,
marker) → run what is not finished → write ``results.json`` and the report. Everything that can
fail on bad input fails before the first run starts.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from optreg.config import ConfigError, RunConfig
from optreg.regularization import l2_to_weight_decay
from optreg.results import Study, StudyResult
from optreg.runtime import resolve_device, usable_cores
from optreg.studies import (
    adam_parts_study,
    decoupling_study,
    overfitting_study,
    seed_study,
    sweep_study,
)
from optreg.studies.output import Identity, StudyFolder, recorded_threads

__all__ = ["STUDIES", "Execution", "execute", "run_study", "run_sweep", "study_folder", "train"]

Preset = Callable[..., tuple[list[RunConfig], dict[str, Any]]]

#: The named studies: name → the preset function that expands its options into run configs.
STUDIES: dict[str, Preset] = {
    "seed": seed_study,
    "overfitting": overfitting_study,
    "decoupling": decoupling_study,
    "adam-parts": adam_parts_study,
}

ExecutorName = Literal["local", "ray"]


@dataclass(frozen=True)
class Execution:
    """How a study runs — never what it computes. Every execution default lives here.

    Attributes:
        data_dir: folder holding ``cifar-10-batches-py/`` (None: ``$OPTREG_DATA_DIR``, else
            ``~/.cache/optreg``).
        download: download CIFAR-10 (md5-checked) when it is missing.
        download_url: a mirror of ``cifar-10-python.tar.gz`` (implies ``download``).
        device: ``auto`` (cuda, mps, cpu), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
        out: the output folder (None: ``out/<study name>``).
        resume: continue the study in ``out``: skip finished runs, resume checkpoints.
        executor: ``local`` (this process, or worker processes) or ``ray``.
        workers: runs at once (local: worker processes; Ray: the CPUs of a local instance);
            None: as many as the cores and the runs allow.
        threads: torch threads per run; None: the cores divided among the runs running at once
            (a lone run gets every core; Ray: 1). Fixed before the first run starts, recorded,
            and reused on resume: a run's bits may depend on it.
        ray_address: an existing Ray cluster (``host:port``, ``ray://host:port`` or ``auto``).
        progress: progress bars on a terminal.
        tensorboard: write TensorBoard logs of every run under this folder.
    """

    data_dir: str | None = None
    download: bool = False
    download_url: str | None = None
    device: str = "auto"
    out: str | None = None
    resume: bool = False
    executor: ExecutorName = "local"
    workers: int | None = None
    threads: int | None = None
    ray_address: str | None = None
    progress: bool = True
    tensorboard: str | None = None

    def __post_init__(self) -> None:
        for name in ("workers", "threads"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                      or value < 1):
                raise ConfigError(f"{name}={value!r}: must be a whole number >= 1")
        if self.executor not in ("local", "ray"):
            raise ConfigError(f"executor={self.executor!r}: choose 'local' or 'ray'")
        if self.out is not None and not str(self.out).strip():
            raise ConfigError("out: give a folder name (an empty one would mean the current "
                              "folder)")
        if self.ray_address is not None:
            if self.executor != "ray":
                raise ConfigError("ray_address is for the Ray executor: add executor='ray' "
                                  "(--executor ray)")
            _check_ray_address(self.ray_address)
            if self.workers is not None:
                raise ConfigError("workers sizes a local Ray instance; a cluster at "
                                  "ray_address has its own CPUs")


EXECUTION_OPTIONS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(Execution))


# --- entry points ---------------------------------------------------------------------------------
def run_study(name: str, **options: Any) -> StudyResult:
    """Run the named study (:data:`STUDIES`) with its own and the execution options.

    Raises:
        ConfigError: an unknown study or option, or a value a config rejects.
        DataError: the data is missing, damaged or too small for the runs.
        OutputError: the output folder is in use, someone else's, or holds another study.
    """
    if name not in STUDIES:
        raise ConfigError(f"unknown study {name!r}; choose from {', '.join(STUDIES)}")
    return _run_preset(STUDIES[name], f"study {name!r}", options)


def run_sweep(**options: Any) -> StudyResult:
    """Run a grid (:func:`optreg.studies.sweep.sweep_study`'s options: lr, weight_decay, mode,
    seeds, epochs, …) with the execution options."""
    return _run_preset(sweep_study, "a sweep", options)


def train(**options: Any) -> StudyResult:
    """One run: the options are :class:`~optreg.config.RunConfig` fields (no options: the
    exercise's optreg Adam + optreg CE) and the execution options.

    Conveniences of the command line: ``l2=λ`` is the classroom's "L2 = λ" (``weight_decay =
    λ / batch_size``); a weight decay without ``decay_mode`` is coupled L2; without ``name`` the
    run is named after its optimizer and regularisation.
    """
    run_options, execution = _split(options, _TRAIN_OPTIONS, "train")
    return execute(*train_configs(**run_options), execution)


def train_configs(**options: Any) -> tuple[list[RunConfig], dict[str, Any]]:
    """The one config of :func:`train` (see there) and its description."""
    if "l2" in options:
        if "weight_decay" in options:
            raise ConfigError("give l2 (the classroom's λ, divided by the batch size) or "
                              "weight_decay (the raw coefficient), not both")
        batch_size = options.get("batch_size", RunConfig().batch_size)
        options["weight_decay"] = l2_to_weight_decay(options.pop("l2"), batch_size)
    if options.get("weight_decay") and "decay_mode" not in options:
        options["decay_mode"] = "coupled"
    if options.get("decay_mode", "none") != "none" and not options.get("weight_decay"):
        raise ConfigError(f"decay_mode={options['decay_mode']!r} needs l2 or weight_decay")
    config = dataclasses.replace(RunConfig(), **options)
    if "name" not in options:
        parts = [config.implementation, config.optimizer]
        if config.decay_mode != "none":
            parts += [config.decay_mode, f"wd{config.weight_decay:.3g}"]
        config = config.replace(name="-".join(parts))
    return [config], {"name": "train", "kind": "train", "settings": {
        k: v for k, v in config.to_dict().items() if k in options or k == "name"}}


_TRAIN_OPTIONS = frozenset({f.name for f in dataclasses.fields(RunConfig)} | {"l2"})


# --- the orchestration ----------------------------------------------------------------------------
def _run_preset(preset: Preset, what: str, options: Mapping[str, Any]) -> StudyResult:
    known = frozenset(inspect.signature(preset).parameters) - {"name"}
    preset_options, execution = _split(options, known, what)
    return execute(*preset(**preset_options), execution)


def _split(options: Mapping[str, Any], known: frozenset[str],
           what: str) -> tuple[dict[str, Any], Execution]:
    """Options of the study (``known``) and the :class:`Execution`; unknown names refused."""
    unknown = sorted(set(options) - known - set(EXECUTION_OPTIONS))
    if unknown:
        raise ConfigError(f"unknown option(s) for {what}: {', '.join(unknown)}; its options: "
                          f"{', '.join(sorted(known))}, and the execution options "
                          f"{', '.join(EXECUTION_OPTIONS)}")
    own = {k: v for k, v in options.items() if k in known}
    execution = Execution(**{k: v for k, v in options.items() if k in EXECUTION_OPTIONS})
    return own, execution


def execute(configs: Sequence[RunConfig], description: Mapping[str, Any],
            execution: Execution) -> StudyResult:
    """Run ``configs`` as the study ``description`` (a preset's) describes; see the module
    docstring for the order of things."""
    from optreg.data import DataError, ensure_cifar10, fingerprint, load_cifar10
    from optreg.data.splits import covering_sizes, make_splits
    from optreg.executors import make_executor
    from optreg.report import write_report
    from optreg.studies.execute import execute_study

    try:
        device = str(resolve_device(execution.device))
    except ValueError as e:
        raise ConfigError(f"device: {e}") from None
    _check_optional_parts(execution)
    out = study_folder(execution.out, str(description["name"]))

    folder_path = ensure_cifar10(execution.data_dir, download=bool(
        execution.download or execution.download_url), url=_download_url(execution))
    data_id = fingerprint(folder_path)
    try:
        train_size, test_size = covering_sizes(configs)
        data = load_cifar10(folder_path, train_size=train_size, test_size=test_size)
    except DataError as e:
        raise DataError(f"{e} (data in {folder_path})") from None
    for config in configs:  # every run's splits exist, before any run starts
        try:
            make_splits(data, train_size=config.train_size, valid_size=config.valid_size,
                        test_size=config.test_size)
        except DataError as e:
            raise DataError(f"run {config.name!r}: {e} (data in {folder_path})") from None

    workers, threads = _plan(len(configs), execution, device,
                             recorded_threads(out) if execution.resume else None)
    submissions = ",".join(sorted(description.get("sources") or {})) or None
    identity = Identity(str(description["name"]), data_id, threads, submissions, device,
                        {c.run_id: c.name for c in configs})
    folder = StudyFolder.claim(out, identity, resume=execution.resume)
    with folder:
        study = Study(
            name=str(description["name"]), kind=str(description["kind"]),
            settings=dict(description.get("settings") or {}),
            execution={"device": device, "executor": execution.executor, "workers": workers,
                       "threads": threads},
            descriptions=dict(description.get("descriptions") or {}),
            matches=[list(m) for m in description.get("matches") or []],
            panels={k: list(v) for k, v in (description.get("panels") or {}).items()},
            grid=description.get("grid"), reference=description.get("reference"),
            data={"fingerprint": data_id},
        )
        # Workers (and Ray tasks) may run elsewhere: give them the log folder absolutely.
        board = None if execution.tensorboard is None else str(
            Path(execution.tensorboard).expanduser().resolve())
        executor = make_executor(execution.executor, data, device=device, threads=threads,
                                 workers=workers, progress=execution.progress,
                                 ray_address=execution.ray_address, tensorboard=board)
        result = execute_study(configs, study, folder, executor, progress=execution.progress,
                               sources=description.get("sources"))
        write_report(result, folder.path)
    return result


def study_folder(out: str | None, study: str) -> Path:
    """The output folder: ``out`` (``~`` expanded), or ``out/<study name>`` by default."""
    return Path(out).expanduser() if out is not None else Path("out") / study


def _plan(runs: int, execution: Execution, device: str,
          recorded: int | None) -> tuple[int, int]:
    """(runs at once, torch threads per run), fixed before the first run starts.

    Local CPU studies share the cores: ``workers × threads ≤ cores`` (two processes that each
    used both cores of a 2-core machine ran 12× slower than one). Without either given, as many
    workers as runs and cores allow, and the cores divided among them: a lone run gets every
    core. A resumed study keeps its recorded threads (a run's bits may depend on them).
    """
    cores = usable_cores()
    threads = execution.threads or recorded
    if execution.executor == "ray":
        return execution.workers or 0, threads or 1
    if device != "cpu":  # one accelerator: one run at a time, its CPU-side work on every core
        return execution.workers or 1, threads or cores
    if threads is not None:
        workers = execution.workers or max(1, cores // threads)
    else:
        workers = execution.workers or max(1, min(cores, runs))
        threads = max(1, cores // workers)
    return max(1, min(workers, runs)), threads


def _download_url(execution: Execution) -> str:
    from optreg.data import OFFICIAL_URL

    return execution.download_url or OFFICIAL_URL


def _check_optional_parts(execution: Execution) -> None:
    """Import what this study will need before any long work starts (ImportError with the
    install hint otherwise)."""
    from optreg.report import check_report_dependencies

    check_report_dependencies()
    if execution.executor == "ray":
        from optreg.executors.ray import check_reachable, import_ray

        import_ray()
        if execution.ray_address is not None:
            check_reachable(execution.ray_address)
    if execution.tensorboard is not None:
        from optreg.training.tensorboard import check_tensorboard

        check_tensorboard()


_RAY_ADDRESS = re.compile(r"(ray://)?(\[[0-9a-fA-F:]+\]|[A-Za-z0-9_.-]+):(\d{1,5})")


def _check_ray_address(address: str) -> None:
    """``auto``, ``local``, ``host:port`` or ``ray://host:port`` with a port in 1…65535."""
    if address in ("auto", "local"):
        return
    match = _RAY_ADDRESS.fullmatch(address)
    if match is None or not 1 <= int(match[3]) <= 65535:
        raise ConfigError(f"ray_address {address!r}: expected host:port (port 1-65535), "
                          "ray://host:port, or auto")
