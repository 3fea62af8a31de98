"""VGG and ResNet: exact parameter counts, torchvision parity, shortcut options, the lecture's
small networks, init schemes, spatial dropout, fc-to-conv, weight loading."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torchvision

import cnnlab
from cnnlab.errors import CnnlabError, ShapeError
from cnnlab.models import INITS, BasicBlock, Bottleneck, ZeroPadShortcut, freeze, init_weights, load_weights


def meta_model(name: str, **kwargs) -> nn.Module:
    with torch.device("meta"):
        return cnnlab.create_model(name, **kwargs)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


PARAMS_1000 = {
    "vgg11": 132_863_336, "vgg11_bn": 132_868_840, "vgg13": 133_047_848, "vgg16": 138_357_544,
    "vgg16_bn": 138_365_992, "vgg19": 143_667_240, "vgg11_lrn": 132_863_336, "vgg16_c": 133_638_952,
    "resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032, "resnet101": 44_549_160,
    "resnet152": 60_192_808,
}


@pytest.mark.parametrize("name,count", PARAMS_1000.items())
def test_exact_parameter_counts_imagenet(name, count):
    assert n_params(meta_model(name)) == count


@pytest.mark.parametrize(
    "name,kwargs,count",
    [
        ("vgg16", dict(input_size=32, num_classes=10), 33_638_218),
        ("resnet34", dict(num_classes=10), 21_289_802),
        ("resnet152", dict(num_classes=10), 58_164_298),
        ("resnet18", dict(shortcut="A"), 11_515_688),
        ("convnet", {}, 4_266),
    ],
)
def test_exact_parameter_counts_other_settings(name, kwargs, count):
    assert n_params(meta_model(name, **kwargs)) == count


def test_vgg_head_sized_by_arithmetic():
    assert meta_model("vgg16").classifier[0].in_features == 25_088
    assert meta_model("vgg16", input_size=32).classifier[0].in_features == 512
    assert meta_model("vgg16", input_size=64).classifier[0].in_features == 512 * 2 * 2
    with pytest.raises(ShapeError, match=r"vanishes at features\.\d+"):
        meta_model("vgg16", input_size=16)


def test_vgg_configurations_follow_table_1():
    convs = lambda m: [c for c in m.features if isinstance(c, nn.Conv2d)]  # noqa: E731
    assert [len(convs(meta_model(n))) for n in ("vgg11", "vgg13", "vgg16_c", "vgg16", "vgg19")] == [8, 10, 13, 13, 16]
    c = convs(meta_model("vgg16_c"))
    assert [conv.kernel_size[0] for conv in c] == [3, 3, 3, 3, 3, 3, 1, 3, 3, 1, 3, 3, 1]
    lrn = meta_model("vgg11_lrn").features
    assert isinstance(lrn[2], nn.LocalResponseNorm)
    assert (lrn[2].size, lrn[2].alpha, lrn[2].beta, lrn[2].k) == (5, 1e-4, 0.75, 2.0)
    bn = meta_model("vgg11_bn").features
    assert isinstance(bn[1], nn.BatchNorm2d)


TORCHVISION_SHARED = ["vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn",
                      "resnet18", "resnet34", "resnet50", "resnet101", "resnet152"]


@pytest.mark.parametrize("name", TORCHVISION_SHARED)
def test_torchvision_parity(name):
    """Same keys and shapes as torchvision; its weights load and give the same outputs."""
    torch.manual_seed(0)
    theirs = getattr(torchvision.models, name)(weights=None).eval()
    ours = meta_model(name)
    ref = theirs.state_dict()
    assert {k: tuple(v.shape) for k, v in ours.state_dict().items()} == {k: tuple(v.shape) for k, v in ref.items()}
    ours.load_state_dict(ref, assign=True)
    ours.eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_torchvision_parity_other_input_sizes(name):
    torch.manual_seed(1)
    theirs = getattr(torchvision.models, name)(weights=None, num_classes=7).eval()
    ours = cnnlab.create_model(name, num_classes=7, input_size=64)
    ours.load_state_dict(theirs.state_dict())
    ours.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), rtol=0, atol=1e-5)


@pytest.mark.parametrize("block,layers", [(BasicBlock, "resnet18"), (Bottleneck, "resnet50")])
def test_shortcut_options(block, layers):
    a, b, c = (meta_model(layers, shortcut=s) for s in "ABC")
    ds = lambda m: [n for n, mod in m.named_modules() if n.endswith("downsample") and mod is not None]  # noqa: E731
    assert all(isinstance(m.downsample, (ZeroPadShortcut, type(None))) for m in a.modules() if isinstance(m, block))
    n_blocks = sum(isinstance(m, block) for m in b.modules())
    assert len(ds(b)) == (3 if block is BasicBlock else 4)  # only where the shape changes
    assert len(ds(c)) == n_blocks  # every block
    assert n_params(a) < n_params(b) < n_params(c)


def test_zero_pad_shortcut_is_identity_plus_zeros():
    x = torch.randn(2, 4, 7, 7)
    y = ZeroPadShortcut(4, 10, stride=2)(x)
    assert y.shape == (2, 10, 4, 4)
    torch.testing.assert_close(y[:, :4], x[:, :, ::2, ::2])
    assert (y[:, 4:] == 0).all()


@pytest.mark.parametrize("shortcut", ["A", "B", "C"])
@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_resnet_runs_with_every_shortcut_and_stem(name, shortcut):
    model = cnnlab.create_model(name, shortcut=shortcut, stem="cifar", num_classes=10, input_size=32).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert model.conv1.kernel_size == (3, 3) and isinstance(model.maxpool, nn.Identity)


def test_resnet_padding_keeps_tiny_inputs_alive():
    """Every ResNet conv and pool is padded, so even 1x1 inputs survive to the global pool
    (cnnlab.arithmetic agrees with torch: no ShapeError is raised)."""
    model = cnnlab.create_model("resnet18", input_size=1, num_classes=3).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, 1, 1)).shape == (1, 3)


def test_residual_identity_when_weights_zero():
    """The lecture's slide: all weights and biases zero -> a(l+2) = relu(a(l)) = a(l) for a(l) >= 0."""
    block = BasicBlock(8, 8)
    for p in block.parameters():
        nn.init.zeros_(p)
    block.eval()
    x = torch.rand(2, 8, 5, 5)
    torch.testing.assert_close(block(x), x)


def test_lecture_small_resnets():
    ident = cnnlab.create_model("resblocks_identity")
    proj = cnnlab.create_model("resblocks_projection")
    assert n_params(ident) == 2 * ((1 * 4 + 4) + 8 + (4 * 9 + 1) + 2) + (784 * 10 + 10)
    block_1 = (9 * 4 + 4) + 8 + (4 * 8 + 8) + 16 + (8 + 8) + 16
    block_2 = (8 * 9 * 16 + 16) + 32 + (16 * 32 + 32) + 64 + (8 * 32 + 32) + 64
    assert n_params(proj) == block_1 + block_2 + (7 * 7 * 32 * 10 + 10)
    assert proj.linear_1.in_features == 7 * 7 * 32
    assert ident(torch.rand(3, 1, 28, 28)).shape == (3, 10) and proj(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    assert cnnlab.create_model("resblocks_projection", input_size=32).linear_1.in_features == 8 * 8 * 32


def test_allconv_has_no_linear_layer():
    model = cnnlab.create_model("convnet_allconv")
    assert not any(isinstance(m, nn.Linear) for m in model.modules())
    assert sum(isinstance(m, nn.Conv2d) for m in model.modules()) == 7
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)
    assert (model(torch.randn(8, 1, 28, 28)) >= 0).all()  # the notebook's ReLU on the class maps
    torch.manual_seed(0)
    linear_maps = cnnlab.create_model("convnet_allconv", final_relu=False)
    assert (linear_maps(torch.randn(8, 1, 28, 28)) < 0).any()


def test_fc_equals_conv_over_the_full_map():
    """fc-to-conv notebook: Linear(4, 2) on a 2x2 input == a 2x2 conv == a 1x1 conv on 4x1x1."""
    torch.manual_seed(0)
    fc = nn.Linear(4, 2)
    x = torch.randn(3, 1, 2, 2)
    conv = nn.Conv2d(1, 2, kernel_size=2)
    conv.weight.data = fc.weight.data.view(2, 1, 2, 2)
    conv.bias.data = fc.bias.data
    conv1 = nn.Conv2d(4, 2, kernel_size=1)
    conv1.weight.data = fc.weight.data.view(2, 4, 1, 1)
    conv1.bias.data = fc.bias.data
    expected = fc(x.flatten(1))
    torch.testing.assert_close(conv(x).flatten(1), expected)
    torch.testing.assert_close(conv1(x.reshape(3, 4, 1, 1)).flatten(1), expected)


@pytest.mark.parametrize("scheme", sorted(INITS))
def test_init_schemes(scheme):
    torch.manual_seed(0)
    model = cnnlab.create_model("convnet")
    before = model.conv_1.weight.clone()
    init_weights(model, scheme)
    if scheme == "default":
        assert torch.equal(model.conv_1.weight, before)
        return
    for m in (model.conv_1, model.conv_2, model.linear_1):
        assert (m.bias == 0).all()
    w = model.linear_1.weight
    if scheme == "normal":
        assert abs(w.std().item() - 0.1) < 0.01
    if scheme == "uniform":
        assert w.abs().max() <= 0.1 and w.abs().max() > 0.09


def test_vgg_dropout2d_before_each_pool():
    model = meta_model("vgg11", input_size=32, dropout2d=0.2)
    mods = list(model.features)
    for i, m in enumerate(mods):
        if isinstance(m, nn.MaxPool2d):
            assert isinstance(mods[i - 1], nn.Dropout2d) and mods[i - 1].p == 0.2


def test_load_weights_roundtrip_and_errors(tmp_path):
    tv = torchvision.models.resnet18(weights=None, num_classes=10)
    path = tmp_path / "resnet18.pth"
    torch.save(tv.state_dict(), path)
    ours = cnnlab.create_model("resnet18", num_classes=10)
    assert load_weights(ours, path) == []
    assert torch.equal(ours.conv1.weight, tv.conv1.weight)
    with pytest.raises(CnnlabError, match=r"'fc.weight' is \[10, 512\] in the file but \[1000, 512\] in the model"):
        load_weights(cnnlab.create_model("resnet18"), path)
    with pytest.raises(CnnlabError, match="'conv1.weight' is \\[64, 3, 7, 7\\] in the file but \\[64, 1, 7, 7\\]"):
        load_weights(cnnlab.create_model("resnet18", in_channels=1, num_classes=10), path)
    other = cnnlab.create_model("resnet18", num_classes=5)
    assert load_weights(other, path, replace_head=True) == ["fc.weight", "fc.bias"]
    assert torch.equal(other.layer4[1].conv2.weight, tv.layer4[1].conv2.weight)
    (tmp_path / "bad.pth").write_bytes(b"garbage")
    with pytest.raises(CnnlabError, match="cannot be read"):
        load_weights(ours, tmp_path / "bad.pth")


def test_freeze(tmp_path):
    model = cnnlab.create_model("vgg11", input_size=32, num_classes=10)
    n = freeze(model, ["features"])
    assert n == 16 and all(not p.requires_grad for p in model.features.parameters())
    assert all(p.requires_grad for p in model.classifier.parameters())
    with pytest.raises(CnnlabError, match="features, avgpool, classifier"):
        freeze(model, ["backbone"])
