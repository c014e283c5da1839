"""A TensorBoard log of one run: scalars per epoch, hyperparameters with final metrics.

Every run writes into a directory of its own, ``root/<run_dir_name(name, seed, run_id)>/``, and
nothing else: runs in worker processes or Ray tasks share no file, and TensorBoard
(``tensorboard --logdir root``) shows each directory as one run.

**Scalars per epoch** (global step = the epoch, 1-based), under the names :meth:`RunLog.log_epoch`
accepts (the history's names, plus ``lr`` and ``img_per_s``):

==================== ======================== ====================================================
name                 tag                      value
==================== ======================== ====================================================
``train_loss``       ``loss/train``           mean cross-entropy (the data term) over the epoch
``train_objective``  ``loss/objective``       mean minimised objective (when L2 is in the loss)
``valid_loss``       ``loss/valid``           cross-entropy on the validation split
``valid_acc``        ``accuracy/valid``       accuracy on the validation split, in [0, 1]
``lr``               ``lr``                   learning rate at the end of the epoch
``img_per_s``        ``throughput/img_per_s`` training images per second (training steps only)
==================== ======================== ====================================================

**Hyperparameters** (:meth:`RunLog.log_hparams`): TensorBoard's hparams session-start record (the
values) and session-end record (success or failure), plus each final metric ``m`` as the scalar
``final/m``, all at step *last epoch + 1*. No experiment record is written: TensorBoard then builds
the hparams table from every run's own values (inferring each column's domain) and offers every
scalar tag as a metric, ``final/*`` included. TensorBoard accepts bool, int, float and str values;
None values are left out (:func:`flat_hparams` spreads tuples such as ``betas`` over several
keys). Values are stored as TensorBoard stores scalars: float32.

**Resume.** ``RunLog(root, dir_name, first_epoch=k)`` opens the writer with ``purge_step=k``: on
reading, TensorBoard drops every event of that directory with step ≥ k written before, so epochs
an interrupted attempt logged after its last checkpoint appear once, and so does an interrupted
attempt's final record (at step last epoch + 1 ≥ k). A fresh log (k = 1) likewise replaces what an
earlier attempt of the same run left behind. Each epoch is flushed to disk as it is logged.
Two details of TensorBoard's reader matter here. It reads a directory's event files in name
order, and a name starts with the second the file was opened, so a log opened in the same second
as an earlier file of its directory first waits for the next second. And it keeps the first
hparams record of a directory (not a purged one's replacement): a resumed attempt has the same
config, so the same hyperparameters; its final metrics are scalars and do replace the old ones.

TensorBoard is an optional dependency (``pip install 'optreg[tensorboard]'``): it is imported
inside the functions here, never when ``optreg`` is imported.
"""

from __future__ import annotations

import numbers
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from optreg.extras import MissingExtra

__all__ = [
    "EPOCH_TAGS",
    "FINAL_PREFIX",
    "MISSING_HINT",
    "HParamValue",
    "RunLog",
    "check_tensorboard",
    "flat_hparams",
    "run_dir_name",
]

MISSING_HINT = (
    "TensorBoard logging needs the tensorboard package: pip install 'optreg[tensorboard]'"
)

EPOCH_TAGS: Mapping[str, str] = {
    "train_loss": "loss/train",
    "train_objective": "loss/objective",
    "valid_loss": "loss/valid",
    "valid_acc": "accuracy/valid",
    "lr": "lr",
    "img_per_s": "throughput/img_per_s",
}
FINAL_PREFIX = "final/"

HParamValue = bool | int | float | str | None


def check_tensorboard() -> None:
    """Raise MissingExtra (an ImportError) with the install hint unless TensorBoard logging can
    work here."""
    _summary_writer_class()


def _summary_writer_class() -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as e:  # tensorboard missing (or too old for torch)
        raise MissingExtra(MISSING_HINT) from e
    return SummaryWriter


def run_dir_name(name: str, seed: int, run_id: str) -> str:
    """The directory of one run under the log root: ``"{name}-seed{seed}-{run_id}"``.

    The run id (a hash of the config) makes it unique; name and seed make it readable.
    """
    if not isinstance(name, str) or not name or any(c.isspace() or c in "/\\" for c in name):
        raise ValueError(f"name must be non-empty, without spaces or slashes, got {name!r}")
    if type(seed) is not int or seed < 0:
        raise ValueError(f"seed must be an int >= 0, got {seed!r}")
    if not isinstance(run_id, str) or not run_id.isalnum():
        raise ValueError(f"run_id must be a non-empty string of letters and digits, got {run_id!r}")
    return f"{name}-seed{seed}-{run_id}"


def flat_hparams(values: Mapping[str, Any]) -> dict[str, HParamValue]:
    """``values`` with every list or tuple spread over indexed keys: ``betas`` → ``betas[0]``, …

    For :meth:`RunLog.log_hparams`, which takes single values only (e.g. a config's ``to_dict()``).
    """
    flat: dict[str, HParamValue] = {}
    for key, value in values.items():
        if isinstance(value, (list, tuple)):
            flat.update({f"{key}[{i}]": item for i, item in enumerate(value)})
        else:
            flat[key] = value
    return flat


class RunLog:
    """The TensorBoard log of one run, in ``root / dir_name`` (see the module docstring).

    Args:
        root: the log root shared by the runs of a study (created if needed).
        dir_name: this run's directory under ``root``, one path component
            (:func:`run_dir_name`).
        first_epoch: the first epoch this attempt trains: 1 for a new run, k + 1 when resuming
            after epoch k. Events of steps ≥ ``first_epoch`` from earlier attempts are purged.

    Use as a context manager, or call :meth:`close`.

    Raises:
        ImportError: TensorBoard is not installed (with the install hint).
        ValueError: ``dir_name`` is not a single directory name, or ``first_epoch`` < 1.
    """

    def __init__(self, root: str | Path, dir_name: str, *, first_epoch: int = 1) -> None:
        if (
            not isinstance(dir_name, str)
            or dir_name in ("", ".", "..")
            or any(c in "/\\" for c in dir_name)
        ):
            raise ValueError(f"dir_name must be one directory name, got {dir_name!r}")
        if type(first_epoch) is not int or first_epoch < 1:
            raise ValueError(f"first_epoch must be an int >= 1, got {first_epoch!r}")
        summary_writer = _summary_writer_class()
        self.run_dir = Path(root) / dir_name
        _wait_past_existing_events(self.run_dir)
        self._started = time.time()
        self._last_epoch = first_epoch - 1  # the latest epoch logged (or trained before)
        self._writer = summary_writer(log_dir=str(self.run_dir), purge_step=first_epoch)
        self._finished = False  # the final record is written: nothing may follow
        self._closed = False

    def log_epoch(self, epoch: int, scalars: Mapping[str, float]) -> None:
        """Write one epoch's scalars (names from :data:`EPOCH_TAGS`) at step ``epoch``; flush.

        Epochs are logged once each, in increasing order, from ``first_epoch`` on, and before
        :meth:`log_hparams`.
        """
        self._check_writable()
        if type(epoch) is not int or epoch <= self._last_epoch:
            raise ValueError(
                f"epoch must be an int > {self._last_epoch} (each epoch is logged once, in "
                f"order), got {epoch!r}"
            )
        unknown = sorted(set(scalars) - set(EPOCH_TAGS))
        if unknown:
            raise ValueError(f"unknown epoch scalars {unknown}; known: {sorted(EPOCH_TAGS)}")
        values = {EPOCH_TAGS[name]: _number(name, value) for name, value in scalars.items()}
        for tag, value in values.items():
            self._writer.add_scalar(tag, value, global_step=epoch)
        self._writer.flush()
        self._last_epoch = epoch

    def log_hparams(
        self,
        hparams: Mapping[str, HParamValue],
        metrics: Mapping[str, float | None],
        *,
        succeeded: bool = True,
    ) -> None:
        """Write the run's hyperparameters, its final ``metrics`` (as ``final/<name>``) and its
        status (``succeeded``: TensorBoard's success or failure), at step last epoch + 1; flush.

        None values are left out of both. Called once, after the last epoch.
        """
        self._check_writable()
        from tensorboard.plugins.hparams import summary_v2

        values: dict[str, bool | int | float | str] = {}
        for key, value in hparams.items():
            if value is None:
                continue
            if not isinstance(value, (bool, int, float, str)):
                raise TypeError(
                    f"hparam {key!r} is a {type(value).__name__}; TensorBoard takes bool, int, "
                    "float or str (flat_hparams spreads lists and tuples)"
                )
            values[key] = value
        finals = {
            FINAL_PREFIX + key: _number(f"metric {key!r}", value)
            for key, value in metrics.items()
            if value is not None
        }
        step = self._last_epoch + 1
        file_writer = self._writer.file_writer
        file_writer.add_summary(
            summary_v2.hparams_pb(values, start_time_secs=self._started), global_step=step
        )
        file_writer.add_summary(_session_end(succeeded), global_step=step)
        for tag, value in finals.items():
            self._writer.add_scalar(tag, value, global_step=step)
        self._writer.flush()
        self._finished = True

    def close(self) -> None:
        """Flush and close the event file (again: no-op)."""
        if not self._closed:
            self._writer.close()
            self._closed = True

    def __enter__(self) -> RunLog:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _check_writable(self) -> None:
        if self._closed:
            raise ValueError(f"the TensorBoard log {self.run_dir} is closed")
        if self._finished:
            raise ValueError(f"the TensorBoard log {self.run_dir} already has its final record")


def _wait_past_existing_events(run_dir: Path) -> None:
    """If an event file in ``run_dir`` was made in the current second, sleep into the next one.

    TensorBoard reads a directory's event files in name order, and a name starts with the second
    the file was made (``events.out.tfevents.<10-digit second>.<host>.<pid>.<counter>``). A file
    made in the same second as an earlier one could sort before it (counter "10" < "9"), and the
    purge of a resumed attempt would then not apply. (Files dated later, by another machine's
    clock, are beyond repair here.)
    """
    now = time.time()
    seconds = {
        int(field)
        for path in run_dir.glob("events.out.tfevents.*")
        if (field := path.name.split(".")[3]).isdigit()
    }
    if int(now) in seconds:
        time.sleep(int(now) + 1 - now)


def _number(what: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{what} must be a real number, got {type(value).__name__}")
    return float(value)


def _session_end(succeeded: bool) -> Any:
    """TensorBoard's hparams session-end summary, built as its hparams API builds the start."""
    from tensorboard.compat.proto.summary_pb2 import Summary
    from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2

    status = api_pb2.STATUS_SUCCESS if succeeded else api_pb2.STATUS_FAILURE
    end = plugin_data_pb2.SessionEndInfo(status=status, end_time_secs=time.time())
    data = plugin_data_pb2.HParamsPluginData(session_end_info=end)
    value = Summary.Value(
        tag=metadata.SESSION_END_INFO_TAG,
        metadata=metadata.create_summary_metadata(data),
        tensor=metadata.NULL_TENSOR,
    )
    return Summary(value=[value])
