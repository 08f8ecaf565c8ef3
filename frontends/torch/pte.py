"""Read what an existing Ethos-U .pte holds, for `condition measure model.pte`: the NPU it was
compiled for, its Vela command and encoded-weight blocks, and the ops left on the CPU.

A compiled .pte no longer contains the TOSA graph, so Vela cannot be re-run on it and the host
cannot execute it: cycles and accuracy need the FVP (`condition measure … --fvp`, or `condition
fvp`). What is counted here comes straight from the file's bytes.
"""
from __future__ import annotations

import shutil
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from condition.backend.metrics import ArtifactMemory, VelaEstimate
from condition.backend.target import Target, vela_target_flags
from condition.errors import ArtifactError

ETHOS_U_BACKEND = "EthosUBackend"
_HEADER = struct.Struct("<16sIB11s")  # executorch/backends/arm/arm_vela.py's block header


@dataclass(frozen=True)
class PteDelegate:
    target: str
    compile_flags: tuple[str, ...]  # the Vela command line it was compiled with
    blocks: dict[str, int]  # block name → payload bytes

    def missing_flags(self, target: Target) -> list[str]:
        """The Target's Vela hardware flags this delegate was not compiled with (none: it is for `target`)."""
        return [f for f in vela_target_flags(target) if f not in self.compile_flags]


def vela_blocks(stream: bytes) -> dict[str, int]:
    """Block sizes of a `vela_bin_stream` (name, length, padding to 16 bytes)."""
    return {name: len(payload) for name, payload in _vela_payloads(stream).items()}


def _vela_payloads(stream: bytes) -> dict[str, bytes]:
    """Blocks of a `vela_bin_stream` by name (a repeated name's payloads joined)."""
    blocks: dict[str, bytes] = {}
    pos = 0
    while pos + _HEADER.size <= len(stream):
        name, length, _, _ = _HEADER.unpack_from(stream, pos)
        key = name.rstrip(b"\0").decode(errors="replace")
        start = pos + _HEADER.size
        blocks[key] = blocks.get(key, b"") + stream[start:start + length]
        pos = start + ((length + 15) // 16) * 16
        if key == "vela_end_stream":
            break
    return blocks


def scratch_size(stream: bytes) -> int:
    """The Ethos-U scratch a delegate needs: its `scratch_size` block, a little-endian uint32 (how
    executorch/backends/arm/arm_vela.py packs Vela's scratch shape; 0 when the block is missing)."""
    payload = _vela_payloads(stream).get("scratch_size", b"")
    return struct.unpack_from("<I", payload)[0] if len(payload) >= 4 else 0


def pte_memory(path: Path) -> ArtifactMemory:
    """What arm_executor_runner must give this .pte, read from its bytes: the memory plan of its
    largest method (non-constant buffers; entry 0 is the constant buffer, counted elsewhere) for the
    method allocator pool, and the largest Ethos-U delegate scratch for the scratch pool (the runner
    reuses one scratch for every delegate; ExecuTorch's get_ethosu_scratch_from_pte.py takes the max too)."""
    program = _program(path)
    planned = max((sum(plan.non_const_buffer_sizes[1:]) for plan in program.execution_plan), default=0)
    scratch = max((scratch_size(bytes(program.backend_delegate_data[d.processed.index].data))
                   for plan in program.execution_plan for d in plan.delegates if d.id == ETHOS_U_BACKEND), default=0)
    return ArtifactMemory(artifact="pte", planned_bytes=planned, scratch_bytes=scratch)


def _program(path: Path) -> Any:
    from executorch.exir._serialize._program import deserialize_pte_binary

    try:
        return deserialize_pte_binary(path.read_bytes()).program
    except Exception as exc:
        raise ArtifactError(str(path), f"not a readable ExecuTorch program ({type(exc).__name__})") from None


def read_pte(path: Path) -> tuple[list[PteDelegate], list[str]]:
    """(Ethos-U delegates, names of kernels run on the CPU) of a .pte file."""
    program = _program(path)
    delegates, cpu_ops = [], []
    for plan in program.execution_plan:
        for d in plan.delegates:
            if d.id != ETHOS_U_BACKEND:
                continue
            specs = {c.key: bytes(c.value).decode(errors="replace") for c in d.compile_specs}
            flags = tuple(specs.get("compile_flags", "").split())
            data = program.backend_delegate_data[d.processed.index].data
            delegates.append(PteDelegate(specs.get("target", ""), flags, vela_blocks(bytes(data))))
        cpu_ops += [op.name.split("::")[-1] for op in plan.operators]
    return delegates, cpu_ops


def measure_pte(path: Path, target: Target, dataset: str | None, eval_limit: int | None, work: Path) -> dict[str, Any]:
    """Record fields for an Ethos-U .pte (the `condition measure` contract)."""
    delegates, ops = read_pte(path)
    if not delegates:
        raise ArtifactError(str(path), "has no Ethos-U delegate (a .pte for the host CPU has nothing for the NPU to run)")
    compiled_for = {d.target for d in delegates}
    if compiled_for != {target.npu}:
        raise ArtifactError(str(path), f"was compiled for {', '.join(sorted(compiled_for))}, not {target.npu} (pass --target to match)")
    missing = sorted({f for d in delegates for f in d.missing_flags(target)})
    if missing:
        raise ArtifactError(str(path), f"was not compiled for {target.label()}: its Vela flags lack {' '.join(missing)} "
                            "(pass --system-config / --memory-mode / --vela-config to match)")
    cpu = [op for op in ops if "quantize" not in op]  # I/O (de)quantize is glue around the delegate
    local = work / path.name
    shutil.copyfile(path, local)
    estimate = VelaEstimate(
        source="pte",  # block sizes read from the file, no compiler model
        accelerator=target.npu,
        system_config=target.system_config,  # checked above: what the delegates were compiled with
        memory_mode=target.memory_mode,
        encoded_weight_bytes=sum(d.blocks.get("weight_data", 0) for d in delegates),
        ops_on_npu=len(delegates),
        ops_on_cpu=len(cpu),
        cpu_ops=cpu,
    )
    notes = ["a compiled .pte holds no TOSA graph: Vela cycles and accuracy need an FVP run (condition fvp); "
             "encoded weights are the size of the delegate's Vela weight block; ops_on_npu counts delegates"]
    if dataset:
        notes.append("--dataset ignored: an Ethos-U .pte cannot run on the host")
    return {"vela": estimate, "weights": None, "accuracy": [], "artifacts": [("pte", local)], "notes": notes,
            "memory": pte_memory(local)}
