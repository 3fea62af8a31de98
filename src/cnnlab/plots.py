"""Compatibility: the figures moved to :mod:`cnnlab.figures` (training figures, the picture helpers)
and :mod:`cnnlab.analysis.charts` (the Canziani charts of ``cnnlab analyze``)."""

from cnnlab.analysis.charts import analysis_charts
from cnnlab.figures import plot_confusion, plot_curves, plot_init_experiment

__all__ = ["plot_curves", "plot_init_experiment", "plot_confusion", "analysis_charts"]
