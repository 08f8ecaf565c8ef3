"""TensorFlow frontend: tf_keras models conditioned with tfmot, exported to full-int8 TFLite.

tfmot needs Keras 2, so `TF_USE_LEGACY_KERAS=1` is set here, before any module of this package
imports tensorflow (they all import it lazily, inside functions, through `keras_modules()`).
"""
from __future__ import annotations

import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"  # under Keras 3 `cluster_weights` silently returns None
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # keep TF's C++ start-up chatter off the user's terminal

from condition.frontend import TechniqueRegistry  # noqa: E402  (framework-free)

REGISTRY = TechniqueRegistry("tf")  # each technique module registers its `apply` here


def keras_modules():
    """(tensorflow, tf_keras, tensorflow_model_optimization), imported on first use."""
    import tensorflow as tf
    import tensorflow_model_optimization as tfmot
    import tf_keras

    tf.get_logger().setLevel("ERROR")
    return tf, tf_keras, tfmot
