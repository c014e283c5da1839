"""LeNet-5: size, logits, silence, and the same initial weights as the classroom exercise."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from optreg.data import Cifar10, normalize
from optreg.models import LeNet5


class ExerciseLeNet(nn.Module):
    """The module as the classroom exercise writes it (layers created in this order)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 6, 5)
        self.pool = nn.AvgPool2d(2, 2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.conv3 = nn.Conv2d(16, 120, 5)
        self.fc1 = nn.Linear(120, 84)
        self.fc2 = nn.Linear(84, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.tanh(self.conv1(x)))
        x = self.pool(torch.tanh(self.conv2(x)))
        x = torch.tanh(self.conv3(x))
        x = x.view(-1, 120)
        x = torch.tanh(self.fc1(x))
        return self.fc2(x)


def test_has_62006_parameters_in_the_exercise_layers() -> None:
    model = LeNet5()
    assert sum(p.numel() for p in model.parameters()) == 62_006
    shapes = [(name, tuple(p.shape)) for name, p in model.named_parameters()]
    assert shapes == [
        ("conv1.weight", (6, 3, 5, 5)), ("conv1.bias", (6,)),
        ("conv2.weight", (16, 6, 5, 5)), ("conv2.bias", (16,)),
        ("conv3.weight", (120, 16, 5, 5)), ("conv3.bias", (120,)),
        ("fc1.weight", (84, 120)), ("fc1.bias", (84,)),
        ("fc2.weight", (10, 84)), ("fc2.bias", (10,)),
    ]  # fmt: skip
    assert all(p.requires_grad and p.dtype == torch.float32 for p in model.parameters())


@pytest.mark.parametrize("n", [1, 7])
def test_forward_gives_n_by_10_logits_and_prints_nothing(
    n: int, data: Cifar10, capsys: pytest.CaptureFixture[str]
) -> None:
    torch.manual_seed(0)
    model = LeNet5()
    out = model(normalize(data.test.images[:n]))
    assert out.shape == (n, 10) and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    # Logits, not probabilities: some are negative and rows do not sum to one.
    assert (out < 0).any()
    assert not torch.allclose(out.sum(dim=1), torch.ones(n))
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize("seed", [0, 1, 123])
def test_initial_weights_and_outputs_equal_the_exercise_module(seed: int, data: Cifar10) -> None:
    torch.manual_seed(seed)
    ours = LeNet5()
    torch.manual_seed(seed)
    theirs = ExerciseLeNet()
    ours_params, their_params = dict(ours.named_parameters()), dict(theirs.named_parameters())
    assert ours_params.keys() == their_params.keys()
    for name, p in ours_params.items():
        assert torch.equal(p, their_params[name]), name
    x = normalize(data.train.images[:64])
    assert torch.equal(ours(x), theirs(x))


def test_different_seeds_give_different_weights() -> None:
    torch.manual_seed(0)
    a = LeNet5()
    torch.manual_seed(1)
    b = LeNet5()
    assert not torch.equal(a.conv1.weight, b.conv1.weight)


def test_gradients_reach_every_parameter(data: Cifar10) -> None:
    torch.manual_seed(0)
    model = LeNet5()
    loss = nn.functional.cross_entropy(model(normalize(data.train.images[:8])),
                                       data.train.labels[:8])
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
