"""The shared Target as an ExecuTorch EthosUCompileSpec: the same accelerator, system config,
memory mode, .ini and Vela options as the TF side's Vela argv (backend.target.vela_target_flags),
so both frontends compile for exactly the same NPU."""
from __future__ import annotations

from pathlib import Path

from condition.backend.target import Target, VelaOptions, vela_target_flags

# Vela writes <name>_per-layer.csv only with this flag; the summary CSV is always written.
PER_LAYER_FLAG = "--verbose-performance"
# EthosUCompileSpec adds these itself from its own arguments; passing them twice would clash.
_SPEC_OWNED = ("--accelerator-config=", "--system-config=", "--memory-mode=", "--config=", "--output-format=")


def vela_extra_flags(target: Target, options: VelaOptions = VelaOptions()) -> list[str]:
    """The shared Vela flags minus those the compile spec sets from its own arguments."""
    flags = [f for f in vela_target_flags(target, options) if not f.startswith(_SPEC_OWNED)]
    return flags + [PER_LAYER_FLAG]


def compile_spec_for(target: Target, intermediates: str | Path | None = None, options: VelaOptions = VelaOptions()):
    """EthosUCompileSpec for `target`; with `intermediates`, the TOSA file and Vela's CSVs are kept there.

        spec = compile_spec_for(Target.default_for("ethos-u55-128"), run_dir / "delegate")
    """
    from executorch.backends.arm.ethosu import EthosUCompileSpec

    spec = EthosUCompileSpec(
        target=target.npu,
        system_config=target.system_config,
        memory_mode=target.memory_mode,
        extra_flags=vela_extra_flags(target, options),
        config_ini=target.config_ini,  # None = Vela's built-in Arm/vela.ini, as on the TF side
    )
    if intermediates is not None:
        Path(intermediates).mkdir(parents=True, exist_ok=True)
        spec.dump_intermediate_artifacts_to(str(intermediates))
    return spec
