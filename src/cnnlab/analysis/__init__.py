"""The Canziani, Paszke & Culurciello (2016) analysis for any model.

"An analysis of deep neural network models for practical applications" (arXiv:1605.07678)
compares architectures by accuracy, operations, parameters, inference time vs batch size and
memory. :func:`analyze` measures all of these for any ``nn.Module``:

- parameters: total, trainable, non-trainable; buffers separately
- operations for one image, counted on the ``meta`` device by intercepting every ATen op:
  MACs of convolutions and matrix products (FLOPs = 2 x MACs), and, listed apart, the element
  operations of pooling, activations, normalisation and residual adds. Ops it does not know are
  listed by name (with the module that ran them), never silently counted as zero.
- memory: parameter bytes; activation bytes per batch size, forward-only (every tensor the
  forward pass produces) and training (tensors saved for backward), computed on ``meta``; on
  CUDA also the measured peak (``torch.cuda.max_memory_allocated``)
- time per batch size: median of ``repeats`` timed runs after warm-up, achieved GFLOP/s and its
  fraction of the machine's roof (a large float32 matrix multiply timed in the same run)
- accuracy: from cnnlab run directories, or torchvision's documented ImageNet top-1

Modules: ``ops.py`` (operation counter), ``memory.py`` (activation bytes), ``timing.py`` (time
per batch size, roof, machine), ``report.py`` (the report and its rows / CSV / JSON, accuracies),
``pipeline.py`` (``analyze``, ``analyze_models``, ``run_analyze`` = the ``cnnlab analyze``
command), ``charts.py`` (the four Canziani charts), ``html.py`` (the self-contained HTML report).

What a training step costs (``cnnlab summary --train``): ``simulate.py`` (the allocator simulated on
fake tensors over the trainer's step), ``workspace.py`` (CPU kernel buffers the simulation cannot
see), ``estimate.py`` (the step's settings, per-layer FLOPs and saved bytes), ``training.py``
(``training_cost``, ``peaks_by_batch``), ``fit.py`` (``fit_batch_size``, for the tensors or the process's RSS), ``measure.py`` (measured peaks:
profiler on the CPU, ``max_memory_allocated`` on CUDA), ``shapes.py`` (the shape debugger).

What can be analysed (``sources.py``): registry names, ``torchvision:NAME`` (any torchvision classifier,
random weights, its documented top-1 and input) and ``path/file.py:Class`` (loaders in :mod:`cnnlab.external`,
shared with ``cnnlab summary``). ``canziani.py``: ``--canziani`` (the paper's 14 networks, the paper's values
from ``data/canziani2016.json`` with their sources, paper vs cnnlab) and ``--modern`` (later torchvision
classifiers; findings computed: Spearman, Pareto frontiers, Pearson); ``charts_canziani.py`` draws them.
"""

from cnnlab.analysis.html import write_html
from cnnlab.analysis.memory import activation_bytes, activation_memory
from cnnlab.analysis.ops import count_ops
from cnnlab.analysis.pipeline import analyze, analyze_models, run_analyze
from cnnlab.analysis.report import IMAGENET_SOURCE, IMAGENET_TOP1, ModelReport, Report, run_accuracies
from cnnlab.analysis.timing import machine_info, measure_roof, time_model
from cnnlab.analysis.estimate import StepSettings
from cnnlab.analysis.measure import measure_inference_peak, measure_training_peak
from cnnlab.analysis.fit import fit_batch_size
from cnnlab.analysis.training import peaks_by_batch, training_cost

__all__ = [
    "ModelReport",
    "Report",
    "analyze",
    "analyze_models",
    "run_analyze",
    "count_ops",
    "IMAGENET_TOP1",
    "IMAGENET_SOURCE",
    "measure_roof",
    "activation_bytes",
    "activation_memory",
    "run_accuracies",
    "time_model",
    "machine_info",
    "write_html",
    "StepSettings",
    "training_cost",
    "fit_batch_size",
    "peaks_by_batch",
    "measure_training_peak",
    "measure_inference_peak",
]
