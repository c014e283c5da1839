"""Optimizers written from scratch, each a ``torch.optim.Optimizer`` with torch's signature.

One module per algorithm, each read like its ``torch/optim`` counterpart: the class, its
functional entry point, a single-tensor reference kernel and a foreach kernel that match line
for line. :mod:`optreg.optim._common` holds what they share (argument checks in torch's words,
the kernel choice, cache buckets). As in ``torch.optim``, the package exports the classes; the
functional forms live in their modules (``optreg.optim.adam.adam``).
"""

from optreg.optim.adam import Adam, AdamW
from optreg.optim.rmsprop import RMSprop
from optreg.optim.sgd import SGD

__all__ = ["SGD", "Adam", "AdamW", "RMSprop"]
