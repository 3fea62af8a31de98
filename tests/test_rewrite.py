"""Pool before ReLU (training/rewrite.py): the rewritten forward gives the same outputs and the same
gradients, so training ends with bit-for-bit the same weights, and a model fx cannot trace runs as written."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import cnnlab
from cnnlab.training import TrainConfig, Trainer
from cnnlab.training.rewrite import pool_before_relu


class Functional(nn.Module):
    """ReLUs written as functions and methods, an in-place ReLU, and one ReLU whose input is used twice."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(1, 3, 3, padding=1)
        self.b = nn.Conv2d(3, 3, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.a(x)), 2)           # swapped
        y = self.b(x)
        z = F.max_pool2d(y.relu(), 3, stride=2, padding=1)  # y feeds two ReLUs: kept
        skip = F.max_pool2d(torch.relu(y), 3, stride=2, padding=1)  # kept
        w = F.max_pool2d(self.b(x).relu(), 3, stride=2, padding=1)  # swapped (padding is -inf: still commutes)
        return F.adaptive_max_pool2d(self.relu(z + skip + w), 1).flatten(1)  # swapped (in-place ReLU module)


class Branching(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.sum() > 0:  # data-dependent control flow: fx cannot trace it
            return F.max_pool2d(F.relu(x), 2)
        return x


def _ties(shape: tuple[int, ...]) -> torch.Tensor:
    """Inputs with many equal and many negative values, where a wrong arg-max would show."""
    return torch.randint(-3, 4, shape).float()


@pytest.mark.parametrize("name,side,swaps", [("convnet", 28, 2), ("vgg11", 32, 5), ("resnet18", 96, 1)])
def test_zoo_models_are_rewritten_and_agree(name, side, swaps):
    torch.manual_seed(0)
    model = cnnlab.create_model(name, input_size=side).eval()
    rewritten, count = pool_before_relu(model)
    assert count == swaps
    assert set(dict(rewritten.named_parameters())) == set(dict(model.named_parameters()))
    for p, q in zip(rewritten.parameters(), model.parameters()):
        assert p is q  # shared, not copied
    x = torch.randn(2, model_in_channels(name), side, side)
    assert torch.equal(rewritten(x), model(x))


def model_in_channels(name: str) -> int:
    return cnnlab.get_model_info(name).in_channels


def test_gradients_are_bitwise_equal_with_ties():
    torch.manual_seed(1)
    model = Functional()
    rewritten, count = pool_before_relu(model)
    assert count == 3
    x = _ties((4, 1, 12, 12))
    grads = []
    for net in (model, rewritten):
        model.zero_grad(set_to_none=True)
        xi = x.clone().requires_grad_(True)
        out = net(xi)
        out.square().sum().backward()
        grads.append((out.detach(), xi.grad, [p.grad.clone() for p in model.parameters()]))
    (o1, g1, p1), (o2, g2, p2) = grads
    assert torch.equal(o1, o2) and torch.equal(g1, g2)
    assert all(torch.equal(a, b) for a, b in zip(p1, p2))


def test_untraceable_and_pool_free_models_are_left_alone():
    model = Branching()
    assert pool_before_relu(model) == (model, 0)
    plain = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten())
    assert pool_before_relu(plain) == (plain, 0)


def test_training_ends_with_the_same_weights():
    """A few steps of the default model with and without the rewrite: every tensor bit for bit equal."""
    states = []
    for flag in (True, False):
        config = TrainConfig(dataset="digits", epochs=1, batch_size=32, lr=0.05, limit_batches=12,
                             pool_before_relu=flag)
        trainer = Trainer(config)
        assert (trainer.net is trainer.model) is (not flag)
        trainer.fit()
        states.append(trainer.model.state_dict())
    assert states[0].keys() == states[1].keys()
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


@pytest.mark.parametrize("training", [True, False])
def test_scoring_through_the_rewrite_leaves_the_model_in_its_mode(training):
    trainer = Trainer(TrainConfig(dataset="digits", batch_size=32, model="convnet_bn"))
    trainer.model.train(training)
    trainer._score(trainer.test_data)
    assert all(m.training is training for m in trainer.model.modules())
