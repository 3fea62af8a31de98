"""cnnlab.visualize against definitions computed here from scratch: hooked module outputs, Grad-CAM
from its definition, the receptive-field box against gradients, animations against torch's layers."""

from __future__ import annotations

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from cnnlab import arithmetic
from cnnlab.errors import CnnlabError
from cnnlab.models import create_model, list_models, min_input_size
from cnnlab.visualize import (
    choose_gradcam_layer,
    conv_animation,
    dropout_masks,
    effective_receptive_field,
    feature_maps,
    grad_cam,
    integrated_gradients,
    pool_animation,
    saliency,
    theoretical_receptive_field,
    xcorr_animation,
)

pytest.importorskip("captum")


def _hooked(model: nn.Module, x: torch.Tensor, names: list[str]) -> dict[str, torch.Tensor]:
    """Every named module's output, copied the moment the module returns."""
    modules, out = dict(model.named_modules()), {}
    handles = [modules[n].register_forward_hook(lambda m, i, o, n=n: out.__setitem__(n, o.detach().clone()))
               for n in names]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return out


def _grad_cam_reference(model: nn.Module, x: torch.Tensor, layer: str, target=None) -> torch.Tensor:
    """Selvaraju et al. 2017 from the definition: channel weights = spatial mean of d score / d A,
    ReLU of the weighted sum, bilinear upsampling, min-max per image."""
    store = {}

    def hook(module, inputs, output):
        copy = output.clone()  # later in-place ops must not touch A
        store["A"] = copy
        copy.register_hook(lambda g: store.__setitem__("G", g))
        return copy

    handle = dict(model.named_modules())[layer].register_forward_hook(hook)
    logits = model(x.clone().requires_grad_(True))
    handle.remove()
    t = logits.argmax(1) if target is None else torch.as_tensor(target).expand(x.shape[0])
    logits.gather(1, t.view(-1, 1)).sum().backward()
    weights = store["G"].mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * store["A"].detach()).sum(dim=1, keepdim=True))
    cam = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    lo = cam.flatten(1).min(1).values.view(-1, 1, 1)
    hi = cam.flatten(1).max(1).values.view(-1, 1, 1)
    return torch.nan_to_num((cam - lo) / (hi - lo), nan=0.0)  # a flat map (all zero after the ReLU): zeros


MODELS = [("convnet", {}, 1, 28), ("vgg11_bn", {}, 3, 32), ("resnet18", {"shortcut": "A"}, 3, 48),
          ("resnet18", {"shortcut": "B"}, 3, 32), ("resblocks_projection", {}, 1, 28)]


@pytest.mark.parametrize("name,options,channels,side", MODELS)
def test_feature_maps_are_exactly_the_hooked_module_outputs(name, options, channels, side):
    torch.manual_seed(1)
    model = create_model(name, input_size=side, **options).eval()
    x = torch.rand(1, channels, side, side)
    names = [n for n, _ in model.named_modules() if n]
    ours = feature_maps(model, x[0], names)
    theirs = _hooked(model, x, names)
    assert list(ours) == names
    for n in names:
        assert torch.equal(ours[n], theirs[n][0]), n
    default = feature_maps(model, x)  # every conv/pool layer, in forward order
    assert default and all(isinstance(dict(model.named_modules())[n], (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d))
                           or next(dict(model.named_modules())[n].children(), None) is not None for n in default)


@pytest.mark.parametrize("name,options,channels,side", MODELS)
def test_grad_cam_equals_the_definition(name, options, channels, side):
    torch.manual_seed(2)
    model = create_model(name, input_size=side, **options).eval()
    x = torch.randn(3, channels, side, side)
    layer = choose_gradcam_layer(model, x).name
    ours = grad_cam(model, x)
    assert ours.shape == (3, side, side)
    assert torch.allclose(ours, _grad_cam_reference(model, x, layer), atol=1e-5)
    assert float(ours.min()) == 0.0 and torch.allclose(ours.flatten(1).max(1).values, torch.ones(3))
    # an explicit layer and explicit targets (one for all, one per image)
    mid = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)][1]
    assert torch.allclose(grad_cam(model, x, mid, target=3), _grad_cam_reference(model, x, mid, 3), atol=1e-5)
    per_image = grad_cam(model, x, layer, target=torch.tensor([0, 1, 2]))
    for i in range(3):
        assert torch.allclose(per_image[i], _grad_cam_reference(model, x[i:i + 1], layer, i)[0], atol=1e-5)


def _last_spatial_by_definition(model: nn.Module, x: torch.Tensor) -> tuple[str, list[tuple[str, tuple]]]:
    """Every module's output (its last call) in the order produced; the last with more than one cell."""
    events = {}
    modules = {m: n for n, m in model.named_modules() if n}
    handles = [m.register_forward_hook(lambda mod, i, o: events.__setitem__(modules[mod], (len(events), o.shape)))
               for m in modules]
    model(x)
    for h in handles:
        h.remove()
    order = sorted(((n, s) for n, (k, s) in events.items()), key=lambda e: events[e[0]][0])
    return order, [n for n, s in order if len(s) == 4 and s[2] * s[3] > 1]


@pytest.mark.parametrize("name", list_models())
def test_automatic_layer_is_the_last_with_spatial_extent_for_every_registry_model(name):
    side = 28 if name.startswith(("convnet", "resblocks")) else max(32, min_input_size(name))  # alexnet 63, inception_v3 75
    with torch.device("meta"):
        model = create_model(name, input_size=side).eval()
        channels = 1 if side == 28 else 3
        choice = choose_gradcam_layer(model, (channels, side, side))
        order, spatial = _last_spatial_by_definition(model, torch.empty(1, channels, side, side))
    shapes = dict(order)
    assert shapes[choice.name][2] * shapes[choice.name][3] > 1
    later = [n for n in spatial if [o for o, _ in order].index(n) > [o for o, _ in order].index(choice.name)]
    pass_through = (nn.Identity, nn.Dropout, nn.Dropout2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
    modules = dict(model.named_modules())
    assert all(isinstance(modules[n], pass_through) for n in later), later  # only copies of the map come later
    assert choice.next_name is not None and "spatial extent > 1" in choice.reason


def test_model_without_conv_layers_and_wrong_channels_are_user_errors():
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    for call in (lambda: grad_cam(mlp, torch.rand(1, 1, 4, 4)), lambda: feature_maps(mlp, torch.rand(1, 4, 4)),
                 lambda: choose_gradcam_layer(mlp, (1, 4, 4))):
        with pytest.raises(CnnlabError, match="no convolutional layer"):
            call()
    model = create_model("convnet").eval()
    with pytest.raises(CnnlabError, match="3 channels but conv_1 takes 1"):
        feature_maps(model, torch.rand(3, 28, 28))
    with pytest.raises(CnnlabError, match="did you mean conv_1"):
        grad_cam(model, torch.rand(1, 1, 28, 28), layer="conv1")
    with pytest.raises(CnnlabError, match="class 10 does not exist"):
        grad_cam(model, torch.rand(1, 1, 28, 28), target=10)


def test_saliency_and_integrated_gradients():
    torch.manual_seed(3)
    model = create_model("convnet").eval()
    x = torch.rand(2, 1, 28, 28)
    xg = x.clone().requires_grad_(True)
    model(xg)[:, 4].sum().backward()
    assert torch.allclose(saliency(model, x, target=4), xg.grad.abs().amax(1), atol=1e-6)
    ig = integrated_gradients(model, x, target=4, steps=64)
    with torch.no_grad():
        gap = model(x)[:, 4] - model(torch.zeros_like(x))[:, 4]
    assert torch.allclose(ig.sum(dim=(1, 2, 3)), gap, rtol=1e-2, atol=1e-3)  # completeness


ERF_MODELS = [("vgg11", {}, 32), ("resnet18", {"shortcut": "A"}, 32), ("resnet18", {"shortcut": "B"}, 32),
              ("resnet18", {"shortcut": "C"}, 32), ("resnet50", {"shortcut": "A"}, 32), ("convnet", {}, 28)]


@pytest.mark.parametrize("name,options,side", ERF_MODELS)
def test_effective_receptive_field_lies_inside_the_theoretical_box(name, options, side):
    from cnnlab.summary import receptive_field_map

    torch.manual_seed(4)
    model = create_model(name, input_size=side, **options)
    channels = 1 if name == "convnet" else 3
    rfs = receptive_field_map(model, (channels, side, side))
    layers = [n for n, m in model.named_modules()
              if n and (isinstance(m, (nn.Conv2d, nn.MaxPool2d)) or n.count(".") == 1 and n.startswith("layer"))]
    layers = layers[:: max(1, len(layers) // 5)]
    shapes = _hooked(model.eval(), torch.zeros(1, channels, side, side), layers)
    for layer in layers:
        hw = shapes[layer].shape[2:]
        for cell in [(0, 0), (hw[0] // 2, hw[1] - 1)]:
            erf = effective_receptive_field(model, layer, side, 2, cell=cell)
            top, left, bottom, right = rfs[layer].box(*cell)
            outside = erf.clone()
            outside[top:bottom, left:right] = 0
            assert float(erf.sum()) > 0 and not outside.any(), (layer, cell, rfs[layer].box(*cell))
    assert theoretical_receptive_field(model, layers[-1], side) == rfs[layers[-1]]


def test_effective_receptive_field_of_the_first_conv_fills_its_box():
    torch.manual_seed(5)
    model = create_model("convnet")
    with torch.no_grad():
        model.conv_1.weight.abs_().add_(0.1)  # no weight exactly 0
    erf = effective_receptive_field(model, "conv_1", 28, 4, cell=(5, 9))
    assert model.training  # run in eval mode, the mode restored
    assert erf.nonzero().min(0).values.tolist() == [4, 8] and erf.nonzero().max(0).values.tolist() == [6, 10]
    with pytest.raises(CnnlabError, match=r"cell \(28, 0\) is outside conv_1's 28x28 map"):
        effective_receptive_field(model, "conv_1", 28, 1, cell=(28, 0))


GRID = [(i, k, s, p, d) for i in (3, 5, 6) for k in (1, 2, 3) for s in (1, 2) for p in (0, 1, "same") for d in (1, 2)]


@pytest.mark.parametrize("i,k,s,p,d", GRID)
def test_conv_animation_has_one_frame_per_output_position_and_torchs_values(i, k, s, p, d):
    if p == "same" and s > 1:
        p = "valid"
    try:
        before, after = arithmetic.resolve_padding(p, i, k, s, d)
        o = arithmetic.conv_output_size(i + before + after, k, s, 0, d)
    except ValueError:
        with pytest.raises(CnnlabError):
            conv_animation(i, k, s, p, d)
        return
    anim = conv_animation(i, k, s, p, d)
    a, w = torch.tensor(anim.input, dtype=torch.float64), torch.tensor(anim.weight, dtype=torch.float64)
    expected = F.conv2d(F.pad(a[None, None], (before, after, before, after)), w[None, None], stride=s, dilation=d)
    assert anim.positions == o * o == expected.shape[-1] ** 2
    assert len(anim.frames) == anim.positions + 2
    assert torch.equal(torch.tensor(anim.panels[0].output, dtype=torch.float64), expected[0, 0])


@pytest.mark.parametrize("i,k,s,p,d,op", [(i, k, s, p, d, op) for i in (2, 3) for k in (2, 3) for s in (1, 2, 3)
                                         for p in (0, 1, 2) for d in (1, 2) for op in (0, 1)])
def test_transposed_animation_matches_conv_transpose2d(i, k, s, p, d, op):
    try:
        o = arithmetic.conv_transpose_output_size(i, k, s, p, op, d)
    except ValueError:
        with pytest.raises(CnnlabError):
            conv_animation(i, k, s, p, d, transposed=True, output_padding=op)
        return
    anim = conv_animation(i, k, s, p, d, transposed=True, output_padding=op)
    a, w = torch.tensor(anim.input, dtype=torch.float64), torch.tensor(anim.weight, dtype=torch.float64)
    expected = F.conv_transpose2d(a[None, None], w[None, None], stride=s, padding=p, output_padding=op, dilation=d)
    assert anim.positions == o * o and len(anim.frames) == o * o + 2
    assert torch.allclose(torch.tensor(anim.panels[0].output, dtype=torch.float64), expected[0, 0])


@pytest.mark.parametrize("mode,ceil", [("max", False), ("max", True), ("avg", False), ("avg", True)])
def test_pool_and_xcorr_animations(mode, ceil):
    for i, k, s, p in [(5, 2, 2, 0), (5, 3, 2, 1), (6, 3, 1, 1), (7, 2, 3, 1)]:
        anim = pool_animation(i, k, s, p, mode=mode, ceil_mode=ceil)
        a = torch.tensor(anim.input, dtype=torch.float64)[None, None]
        pool = F.max_pool2d(a, k, s, p, ceil_mode=ceil) if mode == "max" else F.avg_pool2d(a, k, s, p, ceil_mode=ceil)
        assert torch.allclose(torch.tensor(anim.panels[0].output, dtype=torch.float64), pool[0, 0])
        assert len(anim.frames) == pool.shape[-1] ** 2 + 2
    anim = xcorr_animation(5, 3)
    a, w = torch.tensor(anim.input, dtype=torch.float64), torch.tensor(anim.weight, dtype=torch.float64)
    xcorr, conv = (torch.tensor(p.output, dtype=torch.float64) for p in anim.panels)
    assert torch.equal(xcorr, F.conv2d(a[None, None], w[None, None])[0, 0])
    assert torch.equal(conv, F.conv2d(a[None, None], torch.flip(w, (0, 1))[None, None])[0, 0])
    assert anim.panels[0].order[0][0] == 1 and anim.panels[1].order[0][0] == 9  # the slide's visiting orders
    assert len(anim.frames) == 9 + 2


def test_dropout_zeroes_activations_but_dropout2d_whole_channels():
    fmap = torch.rand(16, 6, 6) + 0.1
    plain, spatial = dropout_masks(fmap, 0.5, seed=7)
    kept = spatial != 0
    for c in range(16):  # Dropout2d: a channel is all zero or all kept, scaled by 1/(1-p)
        assert bool(kept[c].all()) or not bool(kept[c].any())
        if kept[c].all():
            assert torch.allclose(spatial[c], 2 * fmap[c])
    assert 0 < int((~kept.flatten(1).all(1)).sum()) < 16
    zero_channels = (plain == 0).flatten(1).any(1)
    assert bool(zero_channels.all()) and not bool((plain == 0).flatten(1).all(1).any())  # scattered, not whole
    assert torch.equal(dropout_masks(fmap, 0.5, seed=7)[1], spatial)  # seeded


def test_image_files_keep_their_channel_count_unless_converted(tmp_path):
    import numpy as np
    from PIL import Image

    from cnnlab.visualize import load_image, load_subject

    gray = np.random.default_rng(0).integers(0, 256, (20, 30), dtype=np.uint8)
    Image.fromarray(gray).save(tmp_path / "gray.png")
    Image.fromarray(np.stack([gray] * 3, axis=-1)).save(tmp_path / "gray_as_rgb.png")  # as save_image writes it
    colour = np.stack([gray, 255 - gray, gray // 2], axis=-1)
    Image.fromarray(colour).save(tmp_path / "colour.png")
    convnet, resnet = load_subject("convnet"), load_subject("resnet18", input_size=32)
    a, b = load_image(convnet, tmp_path / "gray.png"), load_image(convnet, tmp_path / "gray_as_rgb.png")
    assert a.x.shape == (1, 1, 28, 28) and torch.equal(a.x, b.x) and 0 <= float(a.x.min()) <= float(a.x.max()) <= 1
    assert load_image(resnet, tmp_path / "gray_as_rgb.png").x.shape == (1, 3, 32, 32)
    with pytest.raises(CnnlabError, match=r"colour.png has 3 channels \(RGB\) but the model takes 1 \(gray\)"):
        load_image(convnet, tmp_path / "colour.png")
    with pytest.raises(CnnlabError, match=r"has 1 channel \(gray\) but the model takes 3"):
        load_image(resnet, tmp_path / "gray.png")
    assert load_image(convnet, tmp_path / "colour.png", convert=True).x.shape == (1, 1, 28, 28)


def test_layers_can_be_given_as_modules():
    torch.manual_seed(6)
    model = create_model("convnet").eval()
    x = torch.rand(1, 1, 28, 28)
    assert list(feature_maps(model, x, [model.conv_1, "pool_1,conv_2"])) == ["conv_1", "pool_1", "conv_2"]
    assert torch.equal(grad_cam(model, x, model.pool_1), grad_cam(model, x, "pool_1"))
    assert torch.equal(effective_receptive_field(model, model.conv_2, 28, 2),
                       effective_receptive_field(model, "conv_2", 28, 2))
    with pytest.raises(CnnlabError, match="not a module of this model"):
        grad_cam(model, x, nn.Conv2d(1, 1, 3))


def test_take_reads_in_memory_and_streamed_splits_alike(tmp_path):
    import numpy as np
    from PIL import Image

    from cnnlab.data.imagefolder import image_folder_splits
    from cnnlab.visualize.source import take

    rng = np.random.default_rng(1)
    for cls in ("a", "b"):
        for split in ("train", "test"):
            (tmp_path / split / cls).mkdir(parents=True)
            for i in range(3):
                Image.fromarray(rng.integers(0, 256, (12, 10), dtype=np.uint8)).save(tmp_path / split / cls / f"{i}.png")
    memory = image_folder_splits(tmp_path, 8, 1).test
    streamed = image_folder_splits(tmp_path, 8, 1, stream=True, workers=0).test
    assert type(memory).__name__ == "TensorData" and type(streamed).__name__ == "StreamingImages"
    for (x1, y1), (x2, y2) in [(take(memory, [4, 0]), take(streamed, [4, 0]))]:
        assert x1.shape == (2, 1, 8, 8) and torch.equal(x1, x2) and torch.equal(y1, y2)
