"""LeNet-5 for 3×32×32 images, exactly as the classroom exercise builds it."""

from __future__ import annotations

import torch
from torch import nn


class LeNet5(nn.Module):
    """LeNet-5 (LeCun et al., 1998) with tanh and average pooling, for CIFAR-10.

    ========  =====================  =============
    layer     shape                  output
    ========  =====================  =============
    conv1     3→6, 5×5, tanh, avg 2  6×14×14
    conv2     6→16, 5×5, tanh, avg 2 16×5×5
    conv3     16→120, 5×5, tanh      120×1×1
    fc1       120→84, tanh           84
    fc2       84→10                  10 (logits)
    ========  =====================  =============

    62,006 parameters. The layers are created in this order, so ``torch.manual_seed(s)`` right
    before construction gives the same initial weights as the exercise's own module.
    ``forward`` returns logits (no softmax) and prints nothing.
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, kernel_size=5)
        self.conv2 = nn.Conv2d(6, 16, kernel_size=5)
        self.conv3 = nn.Conv2d(16, 120, kernel_size=5)
        self.fc1 = nn.Linear(120, 84)
        self.fc2 = nn.Linear(84, num_classes)
        self.pool = nn.AvgPool2d(kernel_size=2, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.tanh(self.conv1(x)))
        x = self.pool(torch.tanh(self.conv2(x)))
        x = torch.tanh(self.conv3(x)).flatten(1)
        x = torch.tanh(self.fc1(x))
        return self.fc2(x)
