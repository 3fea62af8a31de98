"""The Python API: a wrong type or value of a main argument is a cnnlab error (a subclass of
TypeError or ValueError as fits) with one sentence, not an AttributeError, KeyError or IndexError
from deep inside (issue 17)."""

from __future__ import annotations

import pytest
import torch

import cnnlab
from cnnlab.conv import conv2d, convolve2d, correlate2d
from cnnlab.errors import CnnlabError, CnnlabTypeError, CnnlabValueError, check_shape

MODEL = cnnlab.create_model("convnet")
X = torch.randn(2, 1, 28, 28)

CASES = [
    # (call, expected class, fragment)
    (lambda: cnnlab.optimize(MODEL, "channels_last", (X, X)), TypeError, "not (x, x)"),
    (lambda: cnnlab.optimize(MODEL, "eager", [X]), TypeError, "example_input must be one tensor"),
    (lambda: cnnlab.optimize("convnet", "eager", X), TypeError, "model must be an nn.Module"),
    (lambda: cnnlab.optimize(MODEL, 3, X), TypeError, "mode must be a mode name"),
    (lambda: cnnlab.optimize(MODEL, "fastest", X), ValueError, "unknown optimize mode 'fastest'"),
    (lambda: cnnlab.optimize(MODEL, "eager", X[0]), ValueError, "x.unsqueeze(0)"),
    (lambda: cnnlab.optimize(MODEL, "eager", X.long()), TypeError, "floating-point"),
    (lambda: cnnlab.optimize(MODEL, "eager", torch.randn(2, 3, 28, 28)), ValueError, "cannot run on example_input"),
    (lambda: cnnlab.optimize(MODEL, "int8", X, calibration=5), TypeError, "calibration must be"),
    (lambda: cnnlab.optimize(MODEL, "int8", X, calibration=torch.randn(4, 1, 8, 8)), ValueError,
     "the example's image shape"),
    (lambda: cnnlab.create_model(5), TypeError, "a model is named by a string"),
    (lambda: cnnlab.create_model(None), TypeError, "a model is named by a string"),
    (lambda: cnnlab.create_model("convnet", num_classes=0), ValueError, "num_classes must be a positive integer"),
    (lambda: cnnlab.create_model("convnet", nope=1), ValueError, "has no option 'nope'"),
    (lambda: cnnlab.create_model("convnt"), ValueError, "did you mean convnet"),
    (lambda: cnnlab.get_model_info(["vgg16"]), TypeError, "a model is named by a string"),
    (lambda: cnnlab.summarize("convnet", (1, 28, 28)), TypeError, "use summarize_model"),
    (lambda: cnnlab.summarize(MODEL, "1x28x28"), TypeError, "input_shape must be a tuple"),
    (lambda: cnnlab.summarize(MODEL, (1, -28, 28)), ValueError, "positive integers"),
    (lambda: cnnlab.summarize(MODEL, (1, 28.5, 28)), ValueError, "positive integers"),
    (lambda: cnnlab.summarize_model(MODEL), TypeError, "summarize(model, input_shape)"),
    (lambda: cnnlab.summarize_model(7), TypeError, "a model is named by a string"),
    (lambda: cnnlab.summarize_model("convnet", (28, 28)), ValueError, "input_shape must be a tuple of 3"),
    (lambda: cnnlab.analyze("convnet", (1, 28, 28), timing=False), TypeError, "model must be an nn.Module"),
    (lambda: cnnlab.analyze(MODEL, (1, 28, 28), [0], timing=False), ValueError, "batch_sizes must be positive"),
    (lambda: cnnlab.load_weights("convnet", "x.pt"), TypeError, "model must be an nn.Module"),
    (lambda: cnnlab.with_probas("convnet"), TypeError, "model must be an nn.Module"),
    (lambda: cnnlab.arithmetic.conv_output_size("5", 3), TypeError, "i must be an int"),
    (lambda: cnnlab.arithmetic.conv_output_size(5, 3, 0), ValueError, "s must be >= 1"),
    (lambda: cnnlab.arithmetic.conv_output_size(2, 5), ValueError, "output must be >= 1"),
    (lambda: correlate2d([[1.0, 2.0]], torch.ones(1, 1)), TypeError, "the array is a list"),
    (lambda: convolve2d(torch.ones(5, 5), "k"), TypeError, "the kernel is a str"),
    (lambda: correlate2d(torch.ones(5), torch.ones(2, 2)), ValueError, "take 2-D tensors"),
    (lambda: correlate2d(torch.ones(5, 5), torch.ones(2, 2), "bad"), ValueError, "mode must be"),
    (lambda: conv2d([1.0], torch.ones(1, 1, 1, 1)), TypeError, "x is a list"),
    (lambda: conv2d(X, torch.ones(1, 1, 3, 3), algorithm="strassen"), ValueError, "unknown algorithm 'strassen'"),
    (lambda: conv2d(X, torch.ones(1, 1, 3, 3), stride=0), ValueError, "must be positive"),
]


@pytest.mark.parametrize("call,kind,fragment", CASES, ids=[f"case{i}" for i in range(len(CASES))])
def test_api_mistakes_are_cnnlab_errors_in_one_sentence(call, kind, fragment):
    with pytest.raises(CnnlabError) as info:
        call()
    err = info.value
    assert isinstance(err, kind), type(err).__mro__
    message = str(err)
    assert fragment in message and "\n" not in message and len(message) < 400, message


def test_check_shape_accepts_what_torch_gives():
    assert check_shape(torch.Size([1, 28, 28])) == (1, 28, 28)
    assert check_shape([torch.tensor(3), 8, 8]) == (3, 8, 8)
    assert check_shape((64,), "input_shape", (1, 3)) == (64,)
    with pytest.raises(CnnlabTypeError):
        check_shape(28)
    with pytest.raises(CnnlabValueError):
        check_shape((True, 28, 28))


def test_the_right_arguments_still_work():
    module = cnnlab.optimize(MODEL, "eager", X)
    assert module(X).shape == (2, 10)
    assert cnnlab.summarize(MODEL, (1, 28, 28)).total_params > 0
    assert cnnlab.summarize_model("convnet", [1, 28, 28]).input_shape == [1, 28, 28]
