"""Compatibility: callbacks now live in :mod:`cnnlab.training.callbacks`."""

from cnnlab.training.callbacks import Callback, ConsoleLogger, TensorBoardLogger

__all__ = ["Callback", "ConsoleLogger", "TensorBoardLogger"]
