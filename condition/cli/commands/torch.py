"""`condition torch …`: condition a PyTorch model and compile it to an ExecuTorch .pte with the
Ethos-U delegate. Only parses options and calls the library (torch is imported when a run starts)."""
from __future__ import annotations

import click

from condition.cli.commands.common import technique_command
from condition.techniques import TECHNIQUE_NAMES

EPILOG = """\b
Accuracy is reported three ways, each labelled in the output:
  float       the trained float32 model in torch
  fake_quant  the PT2E-converted graph run in torch (float simulation of int8: close, not bit-exact)
  int8        the .pte's delegated TOSA graph run on the TOSA reference model
              (bit-exact NPU int8 arithmetic, 250 images per call; --eval-limit N for less)
\b
--model: mlp | cnn | package.module:factory (returns an nn.Module taking N×C×H×W images
of the data set) | a .pt2 saved with torch.export.save.
Ops the partitioner leaves on the CPU are counted and named in the record (not an error).
"""


@click.group(name="torch")
def torch_group() -> None:
    """Condition a PyTorch model: torch.export → PT2E int8 (EthosUQuantizer) →
    to_edge_transform_and_lower (EthosUPartitioner) → .pte, TOSA file and Vela estimate."""


HELP = {
    "post-training-quant": "Int8 post-training quantization (PT2E, symmetric, calibrated on real images) → .pte.",
    "qat": "Quantization-aware training (prepare_qat_pt2e, --qat-epochs of fine-tuning) → .pte.",
    "prune": ("L1 magnitude pruning per layer (--scope global ranks all layers together, like the seed) or 2:4 "
              "(--sparsity), retrained (--fine-tune-epochs), then int8 → .pte."),
    "cluster": "k-means weight sharing per layer (--clusters), fine-tuned with shared values, then int8 → .pte.",
    "channel-prune": ("Remove whole output channels (Torch-Pruning's dependency graph keeps BatchNorm, depthwise, "
                      "residual Add and Flatten→Linear consistent), in whole granules of the NPU found with Vela: "
                      "--cycle-target X × the dense NPU cycles (default 0.6) with each layer's width chosen from "
                      "Vela's per-layer cycles, or --channel-sparsity S of every layer; fine-tuned (--fine-tune-epochs, default 3), "
                      "then int8 → .pte. Fewer MACs: faster on every Ethos-U. Runs first in a chain."),
}
for _technique in TECHNIQUE_NAMES:
    torch_group.add_command(technique_command("torch", _technique, HELP[_technique], EPILOG))
