"""The shared Target as an ExecuTorch EthosUCompileSpec, through its public parameters: the same
accelerator, system config, memory mode and .ini as the TF side's Vela argv, and the same
behaviour flags (backend.target.VELA_BEHAVIOUR_FLAGS), so both frontends compile for exactly the
same NPU. The spec adds the hardware flags to Vela's command line itself."""
from __future__ import annotations

from pathlib import Path

from condition.backend.target import VELA_BEHAVIOUR_FLAGS, Target


def compile_spec_for(target: Target, intermediates: str | Path | None = None):
    """EthosUCompileSpec for `target`; with `intermediates`, the TOSA file and Vela's CSVs are kept there.

        spec = compile_spec_for(Target.default_for("ethos-u55-128"), run_dir / "delegate")
    """
    from executorch.backends.arm.ethosu import EthosUCompileSpec

    spec = EthosUCompileSpec(
        target=target.npu,
        system_config=target.system_config,
        memory_mode=target.memory_mode,
        extra_flags=list(VELA_BEHAVIOUR_FLAGS),
        config_ini=target.vela_config,  # None = Vela's built-in Arm/vela.ini, as on the TF side
    )
    if intermediates is not None:
        Path(intermediates).mkdir(parents=True, exist_ok=True)
        spec.dump_intermediate_artifacts_to(str(intermediates))
    return spec
