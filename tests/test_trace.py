"""cnnlab.trace: one hooked forward pass, a LayerCall per module call, that the summary, the shape
debugger and the visualizations all read."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn as nn

import cnnlab
from cnnlab.summary import summarize
from cnnlab.trace import LayerCall, receptive_field_map, trace


class Twice(nn.Module):
    """One conv called twice, an in-place ReLU, a view in the forward and a fixed-size head."""

    def __init__(self, head: int = 8 * 2 * 2):
        super().__init__()
        self.conv = nn.Conv2d(8, 8, 3, padding=1)
        self.stem = nn.Conv2d(1, 8, 3, stride=2)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(head, 3)

    def forward(self, x):
        x = self.pool(self.relu(self.conv(self.conv(self.stem(x)))))
        return self.fc(x.view(x.shape[0], -1))


@pytest.mark.parametrize("name", ["convnet", "resnet18", "vgg11_bn"])
def test_the_summary_rows_are_the_traced_leaf_calls(name):
    with torch.device("meta"):
        model = cnnlab.create_model(name)
    shape = cnnlab.models.get_model_info(name).input_shape
    traced = trace(model, shape)
    rows = summarize(model, shape).layers
    assert [c.name for c in traced.layers()] == [r.name for r in rows]
    for call, row in zip(traced.layers(), rows):
        assert (list(call.input_shape), list(call.output_shape), call.formula, call.params, call.macs) == \
               (row.input_shape, row.output_shape, row.formula, row.params, row.macs)
        assert (call.receptive_field, call.jump, call.rf_start, call.transition) == \
               (row.receptive_field, row.jump, row.rf_start, row.transition)
    assert traced.receptive_fields() == receptive_field_map(model, shape)
    containers = [c for c in traced.calls if not c.leaf]
    assert bool(containers) == (name != "convnet")
    for c in containers:  # a block's output comes after every call inside it
        inside = [k for k in traced.calls if k.name.startswith(c.name + ".")]
        assert inside and all(k.order < c.order for k in inside)


def test_a_module_called_twice_is_two_records_and_its_parameters_count_once():
    model = Twice()
    traced = trace(model, (1, 10, 10))
    convs = [c for c in traced.calls if c.name == "conv"]
    assert len(convs) == 2 and [c.params for c in convs] == [8 * 8 * 9 + 8, 0]
    assert [c.macs for c in convs] == [4 * 4 * 8 * 8 * 9] * 2
    assert convs[1].receptive_field == convs[0].receptive_field + 2 * 2  # stride-2 stem: jump 2
    views = traced.outputs()
    assert [v.name for v in views] == ["stem", "conv", "relu", "pool", "fc"]  # conv at its last call
    assert convs[1].box(0, 0) == (0, 0, 7, 7)  # rf 11 centred on 1.5, clipped to the input
    assert traced.calls[-1].name == "fc" and traced.calls[-1].box(0, 0) is None  # a linear layer sees everything


def test_kept_outputs_are_the_module_outputs_before_in_place_ops():
    torch.manual_seed(0)
    model = Twice().eval()
    x = torch.randn(1, 1, 10, 10)
    seen = {}
    hook = model.conv.register_forward_hook(lambda m, i, o: seen.setdefault("conv", []).append(o.clone()))
    try:
        traced = trace(model, x, keep={"conv", "pool"})
    finally:
        hook.remove()
    kept = traced.kept()
    assert set(kept) == {"conv", "pool"} and torch.equal(kept["conv"], seen["conv"][-1])
    assert (kept["conv"] < 0).any()  # the in-place ReLU after it did not touch the copy
    assert all(c.output is None for c in traced.calls if c.name not in ("conv", "pool"))
    assert not model.conv._forward_hooks and not model._forward_pre_hooks


@pytest.mark.parametrize("side, where", [(12, ("running", None, (8, 2, 2), "pool")), (3, ("stem", "conv", None, None))])
def test_a_failing_pass_records_where_it_stopped(side, where):
    model = Twice(head=8 * 3 * 3).train()
    traced = trace(model, (1, side, side), catch=True)
    assert traced.error is not None and traced.output is None and model.training
    running, name, last_map, previous = where
    if running == "running":  # a 12x12 input gives 8x2x2 = 32 features for a head of 72: fails in fc
        assert traced.running is model.fc and traced.running_name == "fc" and traced.running_input == (32,)
        assert traced.last_map == last_map and traced.previous == previous
    else:  # a 3x3 input: the stem's output is 1x1, the conv runs, the pool's window no longer fits
        assert traced.running_name == "pool" and traced.running_input == (8, 1, 1)
        assert [c.name for c in traced.layers()] == ["stem", "conv", "conv", "relu"]
    with pytest.raises(RuntimeError):
        trace(model, (1, side, side))


def test_layer_call_is_one_record():
    fields = {f.name for f in dataclasses.fields(LayerCall)}
    assert {"name", "type", "input_shape", "output_shape", "kernel", "stride", "padding", "dilation", "formula",
            "params", "macs", "rf", "output"} <= fields
