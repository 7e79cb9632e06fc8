"""NILM training pipeline for energy_tracker (data preparation, training, export, evaluation).

TensorFlow is only imported by the training and export modules (the `models` extra);
evaluation runs the exported TFLite models through the add-on's own inference code.
"""

CACHE_DIR_NAME = ".cache"
