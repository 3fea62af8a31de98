"""The model registry and the lecture's ConvNet. Parametrised over list_models() so a new
model is tested the day it is registered."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn

import cnnlab
from cnnlab.errors import CnnlabError, ShapeError, UnknownNameError
from cnnlab.models import min_input_size
from cnnlab.summary import summarize_model


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", cnnlab.list_models())
def test_every_model_runs_on_its_smallest_valid_input(name):
    """A real forward pass at the smallest input the arithmetic allows; one pixel less fails."""
    info = cnnlab.get_model_info(name)
    side = min_input_size(name)
    torch.manual_seed(0)
    model = cnnlab.create_model(name, input_size=side, num_classes=3).eval()
    with torch.no_grad():
        assert model(torch.randn(1, info.in_channels, side, side)).shape == (1, 3)
    if side > 1:
        with pytest.raises(ShapeError):
            cnnlab.create_model(name, input_size=side - 1)


def test_smallest_inputs_follow_the_arithmetic():
    assert min_input_size("convnet") == 4  # two 2x2 pools
    assert min_input_size("vgg16") == 32  # five 2x2 pools
    assert min_input_size("resnet50") == 1  # every layer padded


@pytest.mark.parametrize("name", cnnlab.list_models())
def test_every_model_reports_num_classes_and_channels(name):
    with torch.device("meta"):
        model = cnnlab.create_model(name, num_classes=7, in_channels=3).eval()  # eval: BN-AlexNet cannot train on one sample
    info = cnnlab.get_model_info(name)
    out = model(torch.empty(1, 3, info.input_size, info.input_size, device="meta"))
    assert out.shape == (1, 7)


def test_convnet_matches_the_lecture():
    model = cnnlab.create_model("convnet")
    assert n_params(model) == 4266
    names = [n for n, _ in model.named_children()]
    assert names[:5] == ["conv_1", "pool_1", "conv_2", "pool_2", "linear_1"]
    assert model.conv_1.kernel_size == (3, 3) and model.conv_1.padding == (1, 1)
    assert model.conv_2.in_channels == 4 and model.conv_2.out_channels == 8
    assert model.pool_1.kernel_size == 2 and model.pool_1.stride == 2
    assert model.linear_1.in_features == 7 * 7 * 8


@pytest.mark.parametrize(
    "size,flat", [(28, 7 * 7 * 8), (32, 8 * 8 * 8), (8, 2 * 2 * 8), (4, 1 * 1 * 8), (29, 7 * 7 * 8), (64, 16 * 16 * 8)]
)
@pytest.mark.parametrize("channels", [1, 3])
def test_convnet_head_sized_by_arithmetic(size, flat, channels):
    model = cnnlab.create_model("convnet", input_size=size, in_channels=channels, num_classes=5)
    assert model.linear_1.in_features == flat
    assert n_params(model) == 4 * (9 * channels + 1) + 8 * (9 * 4 + 1) + 5 * (flat + 1)
    assert model(torch.randn(3, channels, size, size)).shape == (3, 5)


def test_convnet_reference_forward():
    """Same weights in a hand-written copy of the lecture's forward give the same logits."""
    torch.manual_seed(1)
    model = cnnlab.create_model("convnet").eval()
    x = torch.rand(4, 1, 28, 28)
    out = torch.relu(model.conv_1(x))
    out = model.pool_1(out)
    out = torch.relu(model.conv_2(out))
    out = model.pool_2(out)
    logits = model.linear_1(out.view(-1, 7 * 7 * 8))
    torch.testing.assert_close(model(x), logits, rtol=0, atol=0)


def test_with_probas():
    torch.manual_seed(0)
    model = cnnlab.create_model("convnet")
    logits, probas = cnnlab.with_probas(model)(torch.rand(5, 1, 28, 28))
    torch.testing.assert_close(probas, torch.softmax(logits, dim=1))
    torch.testing.assert_close(probas.sum(dim=1), torch.ones(5))
    assert list(cnnlab.with_probas(model).parameters())[0] is list(model.parameters())[0]


def test_defaults_none_means_model_default():
    a = cnnlab.create_model("convnet", num_classes=None, in_channels=None, input_size=None)
    assert n_params(a) == 4266


def test_too_small_input_names_the_layer():
    with pytest.raises(ShapeError, match=r"vanishes at pool_2.*floor\(\(1 \+ 0 - 2\)/2\) \+ 1 = 0"):
        cnnlab.create_model("convnet", input_size=2)


def test_unknown_model_suggests_close_names():
    with pytest.raises(UnknownNameError, match="did you mean convnet"):
        cnnlab.create_model("convnt")


def test_unknown_option_is_a_user_error():
    with pytest.raises(CnnlabError, match="no option 'foo'"):
        cnnlab.create_model("convnet", foo=1)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_bad_sizes_rejected(bad):
    with pytest.raises(CnnlabError):
        cnnlab.create_model("convnet", num_classes=bad)


def test_convnet_dropout2d_zeroes_whole_channels():
    model = cnnlab.create_model("convnet", dropout2d=0.5)
    drop = model.dropout2d
    torch.manual_seed(0)
    x = torch.randn(4, 16, 5, 5) + 3.0  # no zeros in the input
    y = drop.train()(x)
    per_channel = (y == 0).flatten(2).all(dim=2) | (y != 0).flatten(2).all(dim=2)
    assert per_channel.all()  # each channel is either fully dropped or fully kept
    kept = (y != 0).flatten(2).all(dim=2)
    assert 0 < kept.float().mean() < 1
    torch.testing.assert_close(y[kept.unsqueeze(-1).unsqueeze(-1).expand_as(y)],
                               (x * 2.0)[kept.unsqueeze(-1).unsqueeze(-1).expand_as(x)])
    torch.testing.assert_close(drop.eval()(x), x)


def test_registry_metadata():
    info = cnnlab.get_model_info("convnet")
    assert info.input_shape == (1, 28, 28) and info.num_classes == 10
    assert "dropout2d" in info.options
    assert "convnet" in cnnlab.list_models() and cnnlab.list_models("convnet") == ["convnet", "convnet_allconv"]
    assert cnnlab.list_models("vgg") == sorted(["vgg11", "vgg11_bn", "vgg11_lrn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn",
                                                "vgg16_c", "vgg19", "vgg19_bn"])


@pytest.mark.parametrize("name", cnnlab.list_models())
def test_summary_params_equal_module_params(name):
    s = summarize_model(name)
    with torch.device("meta"):
        model = cnnlab.create_model(name)
    assert s.total_params == n_params(model)
    assert sum(r.params for r in s.layers) == s.total_params
