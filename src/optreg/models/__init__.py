"""Models: the networks a run can train, by the name a :class:`~optreg.config.RunConfig` uses."""

from optreg.models.lenet import LeNet5

__all__ = ["LeNet5"]
