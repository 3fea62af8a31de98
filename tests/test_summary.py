"""Shape traces: the lecture's comments reproduced, and agreement with real forward passes."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn

import cnnlab
from cnnlab.summary import parse_shape, summarize, summarize_model
from cnnlab.errors import CnnlabError


def test_convnet_trace_is_the_lecture_comments():
    s = summarize_model("convnet")
    assert [r.transition for r in s.layers] == [
        "28x28x1 => 28x28x4",
        "28x28x4 => 14x14x4",
        "14x14x4 => 14x14x8",
        "14x14x8 => 7x7x8",
        "392 => 10",
    ]
    assert s.layers[0].formula == "(28 + 2 - 3)/1 + 1 = 28"
    assert s.layers[1].formula == "floor((28 + 0 - 2)/2) + 1 = 14"
    assert [r.params for r in s.layers] == [40, 0, 296, 0, 3930]
    assert s.total_params == 4266
    # hand count: 28*28*4*9 + 14*14*8*4*9 + 392*10
    assert s.total_macs == 28224 + 56448 + 3920 == 88592
    assert s.total_flops == 2 * 88592
    assert [(r.receptive_field, r.jump) for r in s.layers[:4]] == [(3, 1), (4, 2), (8, 2), (10, 4)]
    assert s.layers[4].receptive_field is None  # a linear layer sees the whole input


def test_summary_shapes_match_a_real_forward():
    torch.manual_seed(0)
    model = cnnlab.create_model("convnet", input_size=32, in_channels=3)
    s = summarize(model, (3, 32, 32))
    seen = []
    hooks = [m.register_forward_hook(lambda m, i, o: seen.append(list(o.shape[1:])))
             for m in model.modules() if next(m.children(), None) is None]
    model(torch.zeros(1, 3, 32, 32))
    for h in hooks:
        h.remove()
    assert [r.output_shape for r in s.layers] == seen


def test_summary_of_arbitrary_module_with_branches():
    """Residual-style graph: the receptive field of the sum is that of the longer branch."""

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Conv2d(2, 2, 3, padding=1)
            self.b = nn.Conv2d(2, 2, 3, padding=1)
            self.short = nn.Conv2d(2, 2, 1)

        def forward(self, x):
            return self.b(torch.relu(self.a(x))) + self.short(x)

    model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), Block(), nn.Conv2d(2, 2, 3, padding="same"))
    s = summarize(model, (1, 16, 16))
    by_name = {r.name: r for r in s.layers}
    assert by_name["1.b"].receptive_field == 7
    assert by_name["1.short"].receptive_field == 3
    assert by_name["2"].receptive_field == 9  # after the block (rf 7) one more 3x3
    assert by_name["2"].padding == "same" and by_name["2"].output_shape == [2, 16, 16]
    assert s.total_macs == sum(16 * 16 * 2 * c * k * k for c, k in [(1, 3), (2, 3), (2, 3), (2, 1), (2, 3)])


def test_summary_to_dict_is_json():
    d = summarize_model("convnet", (1, 8, 8)).to_dict()
    text = json.dumps(d)
    assert json.loads(text)["total_params"] == 4 * 10 + 8 * 37 + 10 * 33
    assert d["layers"][0]["transition"] == "8x8x1 => 8x8x4"


def test_parse_shape():
    assert parse_shape("1x28x28") == (1, 28, 28)
    for bad in ["28", "1x28", "axbxc", "0x1x1"]:
        with pytest.raises(CnnlabError):
            parse_shape(bad)
