"""The memory a Vela-compiled .tflite asks TFLite Micro for, read from the file's tensors.

Vela writes its feature-map arena into the .tflite as non-constant tensors (`scratch`, and
`scratch_fast` when a Dedicated_Sram mode caches it in SRAM); TFLite Micro allocates every
non-constant tensor (those, the inputs and outputs, and the tensors of ops left on the CPU) in its
tensor arena, 16-byte aligned. The sum is the arena's tensor part, read from the file rather than
estimated; the interpreter's own bookkeeping (a few KiB, build-dependent) is not counted.
The .pte counterpart (method memory plan, delegate scratch) is in frontends/torch/pte.py, since
reading a .pte needs ExecuTorch.

    memory = vela_tflite_memory(Path("model_int8_vela.tflite"))
    memory.scratch_bytes, memory.planned_bytes
"""
from __future__ import annotations

import math
from pathlib import Path

from condition.backend.metrics import ArtifactMemory
from condition.backend.tflite_file import read_tflite

TFLM_ALIGNMENT = 16  # TFLite Micro aligns each arena tensor to 16 bytes
# tflite TensorType → bytes per element (schema.fbs order: FLOAT32, FLOAT16, INT32, UINT8, INT64, STRING, BOOL, INT16, …)
ELEMENT_BYTES = {0: 4, 1: 2, 2: 4, 3: 1, 4: 8, 6: 1, 7: 2, 9: 1, 10: 8, 12: 8, 15: 4, 16: 2, 17: 1}
SCRATCH, FAST_SCRATCH = "scratch", "scratch_fast"  # Vela's names for the arena tensors


def _aligned(n: int) -> int:
    return -(-n // TFLM_ALIGNMENT) * TFLM_ALIGNMENT


def vela_tflite_memory(path: str | Path) -> ArtifactMemory:
    """Arena tensors of a Vela-compiled .tflite (see the module docstring)."""
    graph = read_tflite(path)
    sizes = [(t.name, math.prod(max(d, 1) for d in t.shape) * ELEMENT_BYTES.get(t.type, 1)) for t in graph.tensors if t.data is None]
    named = lambda name: sum(n for t, n in sizes if t == name)  # noqa: E731
    return ArtifactMemory(artifact="vela_tflite", planned_bytes=sum(_aligned(n) for _, n in sizes),
                          scratch_bytes=named(SCRATCH), fast_scratch_bytes=named(FAST_SCRATCH))
