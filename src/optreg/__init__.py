"""optreg: cross-entropy with L2 and Adam / Adam+L2 / AdamW from scratch, proven equal to
PyTorch's, and studies that compare optimizers and regularizers on LeNet-5 / CIFAR-10.

The core (``optreg.losses``, ``optreg.optim``, ``optreg.regularization``) needs only torch.
"""

__version__ = "0.1.0"

from optreg.config import ConfigError, RunConfig
from optreg.losses import CrossEntropyLoss, cross_entropy, l2_penalty
from optreg.models import LeNet5
from optreg.optim import Adam, AdamW
from optreg.regularization import is_decayed, l2_to_weight_decay, param_groups

__all__ = [
    "Adam",
    "AdamW",
    "ConfigError",
    "CrossEntropyLoss",
    "LeNet5",
    "RunConfig",
    "__version__",
    "cross_entropy",
    "is_decayed",
    "l2_penalty",
    "l2_to_weight_decay",
    "param_groups",
]
