"""PyTorch frontend: torch models conditioned with torch/torchao code, quantized with PT2E and the
EthosUQuantizer, lowered with ExecuTorch's Ethos-U partitioner to a .pte."""
from condition.frontend import TechniqueRegistry

REGISTRY = TechniqueRegistry("torch")  # each technique module registers its `apply` here
