"""`condition tf …`: condition a Keras model with tfmot → full-int8 .tflite → Vela → metrics.
Only parses options and calls the library; tensorflow is imported when a run starts."""
from __future__ import annotations

import click

from condition.cli.commands.common import technique_command
from condition.techniques import TECHNIQUE_NAMES

EPILOG = """\b
Every run: train (or load) the float model → technique → full-int8 .tflite (int8 in/out,
calibrated on training images) → Vela → int8 accuracy on the TFLite interpreter → metrics.json.
The trained float model is cached under OUT/tf/.float-cache/, so later techniques reuse it.
\b
--model: mlp (the seed's 784-512-256-10) | cnn | your Keras file (.keras, .h5, or a tf_keras
SavedModel folder) taking the data set's images and giving one output per class.
\b
Chains follow tfmot's collaborative-optimization order, e.g.
  condition tf prune --sparsity 0.95 --then cluster --clusters 16 --then qat     (PCQAT)
each stage's sparsity and distinct-value count is measured on its exported int8 weights.
Ops Vela cannot place on the NPU stay on the CPU: named in the summary, not an error.
Cycle and traffic figures are Vela estimates.
"""

HELP = {
    "post-training-quant": """Int8 post-training quantization: no retraining.

    The float model's weights become int8 per channel and activation ranges are calibrated on
    --calibration-images training images (100–500 is plenty). The baseline every other technique
    is compared with; typically within a point of float accuracy.

    \b
    Example:  condition tf post-training-quant --target ethos-u55-128
    """,
    "qat": """Quantization-aware training: fine-tune with simulated int8, then convert.

    Fake-quantization nodes let the weights adapt to int8 rounding during --qat-epochs of
    fine-tuning (1–3 is typical). Use it when post-training quantization loses too much accuracy,
    and as the last step of a chain: after prune/cluster it preserves their zeros and shared
    values (PQAT / CQAT / PCQAT) unless --no-preserve-sparsity.

    \b
    Example:  condition tf qat --qat-epochs 2
    """,
    "prune": """Magnitude pruning: zero the smallest weights, retrain, then int8.

    Vela compresses runs of zero weights, so encoded weights (and weight-bound cycles) shrink
    with --sparsity (0.5–0.95 typical; --fine-tune-epochs of retraining recovers most of the
    accuracy lost). --structure 2:4 keeps two of every four input weights, the pattern U85's
    MAC array skips; a --sparsity above 0.5 then prunes further inside that pattern.
    --schedule polynomial ramps the sparsity up during fine-tuning instead of all at once.
    --fine-tune-epochs 0 prunes one-shot without retraining.

    \b
    Examples: condition tf prune --sparsity 0.95
              condition tf prune --structure 2:4 --sparsity 0.95 --target ethos-u85-256
    """,
    "cluster": """Weight clustering: each layer's weights share --clusters values, then int8.

    Vela encodes few distinct values per channel compactly: 16 clusters is a common choice
    (8 is smaller and riskier, 32 safer). --centroid-init picks the starting centroids
    (kmeans++ is a good default). After prune, --preserve-sparsity (default) keeps the zeros.

    \b
    Examples: condition tf cluster --clusters 16
              condition tf prune --sparsity 0.9 --then cluster --clusters 16
    """,
    "channel-prune": """Channel pruning: remove whole output channels, so layers do fewer MACs.

    The one technique that makes a CNN faster on every Ethos-U (zeros from prune shrink the
    encoded weights but skip no MACs on U55/U65). Each Conv/Dense layer keeps its most
    important channels (filter L1 norm after BatchNorm folding); BatchNorm, a following
    depthwise conv, a residual Add's other branches and the next layer's inputs are cut to
    match; the model's input and class outputs never change, and a layer whose coupling
    cannot be followed is left as it is and named. Kept counts are whole granules of the NPU
    (the channel step Vela computes in for --target, found by compiling a sweep with Vela).
    --cycle-target X (default 0.6) picks each layer's width from Vela's per-layer cycles
    until Vela's estimate of the network reaches X × the dense NPU cycles; --channel-sparsity S
    removes a share of every layer instead. Fine-tuned for --fine-tune-epochs (default 3). It runs first in a chain.

    \b
    Examples: condition tf channel-prune --model ds-cnn
              condition tf channel-prune --channel-sparsity 0.5 --model ds-cnn
              condition tf channel-prune --cycle-target 0.5 --then prune --structure 2:4 --then qat
    """,
}


@click.group(name="tf")
def tf() -> None:
    """Condition a Keras model with the TensorFlow Model Optimization Toolkit (tfmot), export a
    full-int8 .tflite and compile it with Vela for the chosen Ethos-U target."""


for _technique in TECHNIQUE_NAMES:
    tf.add_command(technique_command("tf", _technique, HELP[_technique], EPILOG, short_help=HELP[_technique].splitlines()[0]))
