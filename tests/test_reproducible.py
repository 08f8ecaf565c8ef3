"""Same configuration, same bytes, in a process that already ran other cells (a Ray worker). The
cell alone vs inside a compare on 2 workers, byte for byte, is checked in test_compare_ray.py."""
from __future__ import annotations


def test_a_keras_model_built_after_others_in_the_same_process_has_the_same_layer_names():
    """Ray workers run many cells in one process; Keras numbers layer names per process, and the names
    are in the .tflite and the record, so a later cell's model must not be named dense_4."""
    from condition.frontends.tf.models import build_builtin

    first = [layer.name for layer in build_builtin("mlp", (28, 28), 10, seed=0).layers]
    build_builtin("cnn", (28, 28), 10, seed=1)
    assert [layer.name for layer in build_builtin("mlp", (28, 28), 10, seed=0).layers] == first
