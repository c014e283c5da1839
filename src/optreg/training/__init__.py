"""Training: the loop (:func:`fit`, :func:`evaluate`) and one config → one result (:func:`run`)."""

from optreg.training.loop import DivergenceError, History, evaluate, fit, train_epoch
from optreg.training.run import run

__all__ = ["DivergenceError", "History", "evaluate", "fit", "run", "train_epoch"]
