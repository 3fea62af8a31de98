"""The run directory: what ``cnnlab train`` writes, and how everything else reads it back.

- ``format.py``: the files (config.json, metrics.csv, checkpoint.pt, model.pt, result.json), each
  written and read there -- the format has one definition
- ``run.py``: :class:`Run` (``Run.open(path)``), one view of a finished run: settings, classes,
  input shape, preprocessing, its splits as training prepared them, its model; :func:`load_run`
- ``preprocessing.py``: :class:`Preprocessing`, derived once from a run's settings, used by training too
- ``output.py``: :class:`RunOutput`, writing files made from a run's model.pt (locked, recorded)
- ``listing.py``: ``cnnlab runs``' table
- ``scores.py``: the confusion matrix and per-class metrics

Read side: :func:`load_run` refuses a model.pt of another run (its run id, or for an older file
its model, dataset and shapes, against config.json), and reads it in one piece with its
fingerprint. Nothing here imports ``cnnlab.training`` but its settings (``cnnlab.training.config``).
"""

from cnnlab.runs.format import (CHECKPOINT_FILE, CHECKPOINT_KEYS, CONFIG_FILE, CURVES_FILE, METRICS_FILE, MODEL_FILE,
                                RESULT_FILE, END_ARTEFACTS, IDENTITY_KEYS, METRICS_HEADER, MODEL_KEYS,
                                check_run_dir, checkpoint_payload, config_document, default_run_dir,
                                end_artefacts_missing, identity_differences, metrics_row, model_payload, read_checkpoint,
                                read_config_doc, read_metrics, read_result, read_run_config, read_training_checkpoint,
                                write_checkpoint, write_config_doc, write_metrics, write_model, write_result)
from cnnlab.runs.listing import list_runs, read_test_accuracy, run_dirs_under
from cnnlab.runs.output import RunOutput, owning_run
from cnnlab.runs.preprocessing import Preprocessing, load_run_splits, normalized_input, preprocessing_of
from cnnlab.runs.run import SPLITS, LoadedRun, Run, check_model_identity, load_run, open_run
from cnnlab.runs.scores import confusion_counts, per_class_metrics, split_logits

__all__ = [
    "default_run_dir",
    "check_run_dir",
    "end_artefacts_missing",
    "read_checkpoint",
    "read_config_doc",
    "read_run_config",
    "LoadedRun",
    "load_run",
    "check_model_identity",
    "RunOutput",
    "owning_run",
    "list_runs",
    "run_dirs_under",
    "read_test_accuracy",
    # the run as one object
    "Run", "open_run", "SPLITS", "Preprocessing", "preprocessing_of", "load_run_splits",
    "normalized_input",
    # the files, written and read
    "CONFIG_FILE", "METRICS_FILE", "CHECKPOINT_FILE", "MODEL_FILE", "RESULT_FILE", "CURVES_FILE",
    "CHECKPOINT_KEYS", "MODEL_KEYS", "END_ARTEFACTS", "IDENTITY_KEYS", "METRICS_HEADER", "identity_differences",
    "config_document", "write_config_doc", "metrics_row", "write_metrics", "read_metrics", "checkpoint_payload",
    "write_checkpoint", "read_training_checkpoint", "model_payload", "write_model", "write_result", "read_result",
    # scoring
    "confusion_counts", "per_class_metrics", "split_logits",
]
