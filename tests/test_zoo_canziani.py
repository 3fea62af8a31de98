"""The six networks of Canziani et al. 2016 beside VGG and ResNet: alexnet, alexnet_bn, nin_bn,
googlenet, inception_v3, enet. Parameter counts (torchvision's, built here without downloads, where
it has the network), torchvision's weights both ways, MACs against torchvision's documented GFLOPS,
the papers' tables, and the input sizes the arithmetic allows."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torchvision

import cnnlab
from cnnlab.errors import CnnlabError, ShapeError
from cnnlab.models import min_input_size
from cnnlab.models.googlenet import INCEPTIONS
from cnnlab.summary import summarize_model


def meta_model(name: str, **kwargs) -> nn.Module:
    with torch.device("meta"):
        return cnnlab.create_model(name, **kwargs)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def torchvision_model(name: str, **kwargs) -> nn.Module:
    extra = {} if name == "alexnet" else {"init_weights": True}
    return getattr(torchvision.models, name)(weights=None, **extra, **kwargs)


# (our options, torchvision's options): googlenet and inception_v3 with and without auxiliary heads
SHARED = [("alexnet", {}, {}), ("googlenet", {}, {"aux_logits": False}),
          ("googlenet", {"aux_logits": True}, {"aux_logits": True}),
          ("inception_v3", {}, {"aux_logits": False}), ("inception_v3", {"aux_logits": True}, {})]


@pytest.mark.parametrize("name,ours,theirs", SHARED)
def test_parameter_counts_and_keys_equal_torchvision(name, ours, theirs):
    with torch.device("meta"):
        tv = torchvision_model(name, **theirs)
    model = meta_model(name, **ours)
    assert n_params(model) == n_params(tv)
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == {k: tuple(v.shape) for k, v in tv.state_dict().items()}


def test_documented_parameter_counts():
    # torchvision's documented num_params (Inception v3's with its default auxiliary head)
    assert n_params(meta_model("alexnet")) == 61_100_840
    assert n_params(meta_model("googlenet")) == 6_624_904
    assert n_params(meta_model("inception_v3", aux_logits=True)) == 27_161_264
    assert n_params(meta_model("inception_v3")) == 23_834_568
    # the Torch7 files (imagenet-multiGPU.torch): counted by hand in the models' docstrings
    assert n_params(meta_model("alexnet_bn")) == 61_100_840 + 2 * (64 + 192 + 384 + 256 + 256) + 2 * 2 * 4096
    assert n_params(meta_model("nin_bn")) == 8_655_336
    assert n_params(meta_model("enet")) == 5_861_508
    assert n_params(meta_model("enet", num_classes=10)) == 5_861_508 - 990 * 1025


@pytest.mark.parametrize("name,size", [("alexnet", 224), ("googlenet", 224), ("inception_v3", 299)])
def test_torchvision_weights_load_both_ways_with_equal_outputs(name, size):
    torch.manual_seed(0)
    theirs = torchvision_model(name, aux_logits=False) if name != "alexnet" else torchvision_model(name)
    ours = cnnlab.create_model(name)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(1, 3, size, size)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), theirs.eval()(x), rtol=0, atol=1e-5)
        torch.manual_seed(1)
        fresh = cnnlab.create_model(name).eval()
        theirs.load_state_dict(fresh.state_dict())  # and back: ours into torchvision's
        torch.testing.assert_close(theirs(x), fresh(x), rtol=0, atol=1e-5)


@pytest.mark.parametrize("name,size", [("googlenet", 128), ("inception_v3", 299)])  # v3's aux head needs 17x17
def test_transform_input_and_auxiliary_heads_as_torchvision(name, size):
    torch.manual_seed(2)
    theirs = torchvision_model(name, aux_logits=True, transform_input=True)
    ours = cnnlab.create_model(name, aux_logits=True, transform_input=True, input_size=size)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(x), theirs.eval()(x), rtol=0, atol=1e-5)
    torch.manual_seed(3)
    train_out = ours.train()(x)  # training mode: (logits, aux...) as torchvision's named tuple
    assert type(train_out).__name__ == type(theirs.train()(x)).__name__ and train_out[0].shape == (2, 1000)
    assert all(t.shape == (2, 1000) for t in train_out[1:])
    with pytest.raises(CnnlabError, match="in_channels=3"):
        cnnlab.create_model(name, transform_input=True, in_channels=1)


# torchvision's documented "GFLOPS" (GMACs), the precise "_ops" of its weights' metadata
TORCHVISION_GMACS = {"alexnet": 0.714, "googlenet": 1.498, "inception_v3": 5.713}


@pytest.mark.parametrize("name,gmacs", TORCHVISION_GMACS.items())
def test_macs_within_half_percent_of_torchvision(name, gmacs):
    meta = torchvision.models.get_model_weights(name).IMAGENET1K_V1.meta
    assert meta["_ops"] == gmacs
    macs = summarize_model(name).total_macs
    assert abs(macs / 1e9 - gmacs) / gmacs < 0.005


@pytest.mark.parametrize("name", ["alexnet", "googlenet", "inception_v3"])
def test_smallest_inputs_equal_torchvision_min_size(name):
    meta = torchvision.models.get_model_weights(name).IMAGENET1K_V1.meta
    assert (min_input_size(name),) * 2 == meta["min_size"]  # 63, 15, 75


@pytest.mark.parametrize("name,side,layer", [("inception_v3", 74, "Mixed_7a"), ("googlenet", 14, "maxpool"),
                                             ("enet", 30, "stage4.0.reduce"), ("alexnet", 62, "features.12")])
def test_too_small_inputs_name_the_layer(name, side, layer):
    with pytest.raises(ShapeError, match=rf"input size {side} is too small.*{layer}"):
        meta_model(name, input_size=side)


def test_googlenet_follows_table_1():
    model = meta_model("googlenet")
    assert INCEPTIONS["inception4e"] == (528, 256, 160, 320, 32, 128, 128)
    for name, (c_in, c1, c3r, c3, c5r, c5, pool) in INCEPTIONS.items():
        block = getattr(model, name)
        assert block.branch1.conv.in_channels == c_in and block.branch1.conv.out_channels == c1
        assert [block.branch2[0].conv.out_channels, block.branch2[1].conv.out_channels] == [c3r, c3]
        assert [block.branch3[0].conv.out_channels, block.branch3[1].conv.out_channels] == [c5r, c5]
        assert block.branch4[1].conv.out_channels == pool
    assert model.fc.in_features == 384 + 384 + 128 + 128


def test_torch7_networks_follow_their_files():
    bn_alex = meta_model("alexnet_bn")
    bns = [m for m in bn_alex.modules() if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d))]
    assert [m.num_features for m in bns] == [64, 192, 384, 256, 256, 4096, 4096] and {m.eps for m in bns} == {1e-3}
    nin = meta_model("nin_bn")
    convs = [m for m in nin.features if isinstance(m, nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size[0]) for c in convs] == [
        (96, 11), (96, 1), (96, 1), (256, 5), (256, 1), (256, 1), (384, 3), (384, 1), (384, 1), (1024, 3), (1024, 1), (1024, 1)]
    enet = meta_model("enet")
    assert enet.initial.conv.out_channels == 13 and enet.initial.bn.num_features == 16
    widths = [[b.expand.out_channels for b in getattr(enet, f"stage{i}")] for i in range(1, 5)]
    assert widths == [[64, 128, 128], [256, 256, 256], [512, 512, 512], [1024, 1024, 1024]]
    assert enet.stage1[0].conv.in_channels == 64 and enet.stage2[1].conv.in_channels == 64  # internal = out / scale
    assert [b.dropout.p for b in [*enet.stage1, *enet.stage2]] == [0.01] * 5 + [0.1]
    assert not any(isinstance(m, nn.ReLU) for m in enet.modules())  # every activation a PReLU


def test_enet_takes_odd_sides_and_one_channel():
    torch.manual_seed(4)
    model = cnnlab.create_model("enet", input_size=33, in_channels=1, num_classes=5).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 33, 33)).shape == (2, 5)
    assert min_input_size("enet") == 31  # ceil(31/2) = 16 halves four more times to 1


def test_bn_alexnet_refuses_training_on_one_sample_with_one_line():
    proc = summarize_model("alexnet", train=True, batch_size=1)  # plain AlexNet trains on one sample
    assert proc.total_params == 61_100_840
    with pytest.raises(CnnlabError, match="training step fails"):
        summarize_model("alexnet_bn", train=True, batch_size=1)
