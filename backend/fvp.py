"""Run an artifact on a Corstone FVP the user brings, and read the Ethos-U PMU counters it prints.

The FVPs are licence-gated Arm downloads, so nothing here is installed by setup.sh: the FVP and
a runner ELF are found (`--fvp`, CONDITION_FVP_DIR, PATH; CONDITION_RUNNER_DIR) and, when they
are missing, the caller gets a one-line note and keeps the Vela estimate.

The command line is that of ExecuTorch's backends/arm/scripts/run_fvp.sh: U55/U65 on
Corstone-300 (`-C ethosu.num_macs=N`), U85 on Corstone-320
(`-C mps4_board.subsystem.ethosu.num_macs=N`), no visualisation, UART to stdout, shutdown on
end of test, semihosting, `--timelimit`.
"""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from condition.backend.metrics import FvpMeasurement
from condition.backend.pmu_log import parse_pmu_log
from condition.backend.target import Target
from condition.errors import ArtifactError, ConfigError, StepError

log = logging.getLogger(__name__)

FVP_ENV = "CONDITION_FVP_DIR"
RUNNER_ENV = "CONDITION_RUNNER_DIR"
FVP_BINARIES: dict[str, str] = {
    "u55": "FVP_Corstone_SSE-300_Ethos-U55",
    "u65": "FVP_Corstone_SSE-300_Ethos-U65",
    "u85": "FVP_Corstone_SSE-320",
}
# ExecuTorch names its test builds after the board (backends/arm/test/runner_utils.py).
BOARDS: dict[str, str] = {"u55": "corstone-300", "u65": "corstone-300-u65", "u85": "corstone-320"}
PTE_RUNNER = "arm_executor_runner"
TFLITE_RUNNERS = ("mlek_inference_runner.axf", "ethos-u-inference_runner.axf")
# MLEK inference_runner built with inference_runner_DYNAMIC_MEM_LOAD_ENABLED=ON reads the model here.
TFLITE_MODEL_ADDRESS = "0x90000000"
DEFAULT_TIMEOUT_S = 600  # run_fvp.sh's default --timeout
FIX_DOC = "README.md, 'Measuring on an FVP (bring your own)'"


@dataclass(frozen=True)
class Runner:
    """A runner ELF and how it gets the model: `semihosting` (.pte read from the host),
    `dynamic` (.tflite placed in memory with --data), or `embedded` (built with this model inside)."""

    elf: Path
    mode: str


# ---- discovery ---------------------------------------------------------------------------------
def _fvp_in_dir(folder: Path, name: str) -> Path | None:
    """The binary in `folder`, or in the FVP install layout `folder/models/<host>/`."""
    for candidate in (folder / name, *sorted(folder.glob(f"models/*/{name}")), *sorted(folder.glob(f"*/models/*/{name}"))):
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def find_fvp(target: Target, fvp: str | None = None, env: Mapping[str, str] | None = None) -> Path | None:
    """The FVP for the target's NPU family: `fvp` (binary or folder), then CONDITION_FVP_DIR, then PATH.

    A `fvp` path that does not exist is a ConfigError; None means nothing was found.
    """
    env = os.environ if env is None else env
    name = FVP_BINARIES[target.family]
    if fvp not in (None, "", "auto"):
        path = Path(fvp).expanduser()
        if not path.exists():
            raise ConfigError("--fvp", fvp, "no such file or folder", f"pass the folder holding {name} or the binary itself")
        if path.is_dir():
            return _fvp_in_dir(path, name)
        if path.name == name or path.name not in FVP_BINARIES.values():
            return path  # the right model, or a wrapper script the user named
        return _fvp_in_dir(path.parent, name)  # another FVP: look beside it
    if env.get(FVP_ENV):
        found = _fvp_in_dir(Path(env[FVP_ENV]).expanduser(), name)
        if found:
            return found
    which = shutil.which(name, path=env.get("PATH"))
    return Path(which) if which else None


def _runner_dirs(artifact: Path, runner_dir: str | None, env: Mapping[str, str]) -> list[Path]:
    dirs = [Path(d).expanduser() for d in (runner_dir, env.get(RUNNER_ENV)) if d]
    return dirs + [artifact.parent]


def _elf_family(elf: Path) -> str | None:
    """'u85' / 'u55' from the PMU event names ExecuTorch's runner prints; None when unknown."""
    try:
        data = elf.read_bytes()
    except OSError:
        return None
    if b"ETHOSU_PMU_EXT_RD_DATA_BEAT_RECEIVED" in data:
        return "u85"
    if b"ETHOSU_PMU_AXI1_RD_DATA_BEAT_RECEIVED" in data:
        return "u55"  # also U65: same driver counters
    return None


def _family_ok(elf: Path, family: str) -> bool:
    found = _elf_family(elf)
    return found is None or found == ("u55" if family == "u65" else family)


def find_runner(artifact: Path, target: Target, runner_dir: str | None = None, env: Mapping[str, str] | None = None) -> Runner | None:
    """The runner ELF for this artifact and Target, most specific first.

    .pte: `<stem>.elf` / `<stem>_arm_executor_runner` (built with this .pte inside), then a
    semihosting `arm_executor_runner` under `<npu>/`, `<family>/`, `arm_semihosting_executor_runner_<board>/`
    or plain. .tflite (Vela-compiled): `<stem>.axf`/`<stem>.elf`, then an MLEK inference_runner
    built with dynamic model loading, under the same sub-folders. Looked for in `runner_dir`,
    CONDITION_RUNNER_DIR and beside the artifact.
    """
    env = os.environ if env is None else env
    stem = artifact.name.split(".")[0]
    npu, family = target.npu, target.family
    subdirs = [Path(npu), Path(family), Path(f"arm_semihosting_executor_runner_{BOARDS[family]}"), Path(".")]
    if artifact.suffix == ".pte":
        embedded_names = [f"{stem}.elf", f"{stem}_{PTE_RUNNER}", f"{stem}.axf"]
        generic = [(sub / PTE_RUNNER) for sub in subdirs] + [Path(f"{PTE_RUNNER}_{npu}"), Path(f"{PTE_RUNNER}_{family}")]
        generic_mode = "semihosting"
    elif artifact.suffix == ".tflite":
        embedded_names = [f"{stem}.axf", f"{stem}.elf"]
        generic = [(sub / name) for sub in subdirs for name in TFLITE_RUNNERS]
        generic_mode = "dynamic"
    else:
        raise ArtifactError(str(artifact), "the FVP runs .pte (ExecuTorch) or Vela-compiled .tflite files")
    for folder in _runner_dirs(artifact, runner_dir, env):
        for name in embedded_names:
            if (folder / name).is_file():
                return Runner(folder / name, "embedded")
    for folder in _runner_dirs(artifact, runner_dir, env)[:-1]:  # generic runners only where the user said
        for rel in generic:
            elf = folder / rel
            if elf.is_file() and _family_ok(elf, family):
                return Runner(elf, generic_mode)
    return None


# ---- command line ------------------------------------------------------------------------------
def fvp_command(
    target: Target,
    fvp_binary: str | Path,
    elf: str | Path,
    artifact: str | Path | None = None,
    mode: str = "semihosting",
    timeout_s: int = DEFAULT_TIMEOUT_S,
    semihosting_cwd: str | Path | None = None,
    fast: bool = False,
) -> list[str]:
    """argv for one FVP run (run_fvp.sh's flags), as a list; `artifact` is the host file the runner reads.

    mode "semihosting": `executor_runner -m <artifact name>` with semihosting-cwd the artifact's
    folder; "dynamic": `--data <artifact>@0x90000000` (MLEK dynamic model load); "embedded": the
    ELF carries its model.
    """
    if target.family in ("u55", "u65"):
        board, cpu, ethosu = "mps3_board", "cpu0", "ethosu"
        argv = [str(fvp_binary), "-C", f"{ethosu}.num_macs={target.macs}",
                "-C", f"{board}.visualisation.disable-visualisation=1"]
    else:
        board, cpu, ethosu = "mps4_board", "mps4_board.subsystem.cpu0", "mps4_board.subsystem.ethosu"
        argv = [str(fvp_binary), "-C", f"{ethosu}.num_macs={target.macs}",
                "-C", f"{board}.visualisation.disable-visualisation=1", "-C", "vis_hdlcd.disable_visualisation=1"]
    argv += ["-C", f"{board}.telnetterminal0.start_telnet=0", "-C", f"{board}.uart0.out_file=-"]
    if target.family == "u85":
        argv += ["-C", f"{board}.uart0.unbuffered_output=1"]
    argv += ["-C", f"{board}.uart0.shutdown_on_eot=1"]
    if fast:
        argv += ["-C", f"{ethosu}.extra_args=--fast"]
    if mode == "semihosting":
        if artifact is None:
            raise ValueError("a semihosting run needs the artifact")
        cwd = Path(semihosting_cwd) if semihosting_cwd else Path(artifact).parent
        argv += [
            "-C", f"{cpu}.semihosting-enable=1",
            "-C", f"{cpu}.semihosting-stack_base=0",
            "-C", f"{cpu}.semihosting-heap_limit=0",
            "-C", f"{cpu}.semihosting-cwd={cwd}",
            "-C", f"{cpu}.semihosting-cmd_line=executor_runner -m {Path(artifact).name}",
        ]
    argv += ["-a", str(elf)]
    if mode == "dynamic":
        if artifact is None:
            raise ValueError("a dynamic-load run needs the artifact")
        argv += ["--data", f"{artifact}@{os.environ.get('CONDITION_TFLITE_MODEL_ADDRESS', TFLITE_MODEL_ADDRESS)}"]
    elif mode not in ("semihosting", "embedded"):
        raise ValueError(f"unknown runner mode {mode!r}")
    return argv + ["--timelimit", str(timeout_s)]


# ---- run ---------------------------------------------------------------------------------------
def missing_note(target: Target, artifact: Path, fvp_found: Path | None) -> str:
    """One line: what is missing for an FVP run and how to get it."""
    if fvp_found is None:
        return (f"no {FVP_BINARIES[target.family]} found (--fvp PATH, {FVP_ENV} or PATH); "
                f"FVP not run, figures are the Vela estimate; see {FIX_DOC}")
    kind = "ExecuTorch arm_executor_runner" if artifact.suffix == ".pte" else "TFLite-Micro inference_runner (MLEK, dynamic model load)"
    return (f"no {kind} ELF for {target.family.upper()} found ({RUNNER_ENV}); "
            f"FVP not run, figures are the Vela estimate; see {FIX_DOC}")


def run_artifact_on_fvp(
    artifact: Path,
    target: Target,
    fvp: str | None,
    work_dir: Path,
    runner_dir: str | None = None,
    timeout_s: int = DEFAULT_TIMEOUT_S,
) -> tuple[FvpMeasurement | None, str | None]:
    """Run a .pte / Vela .tflite on the FVP for `target` and read its PMU counters.

    Returns (measurement, None), or (None, note) when no FVP or runner is found, so the caller
    keeps the Vela estimate. A run that fails or times out raises StepError.

    >>> m, note = run_artifact_on_fvp(Path("model.pte"), Target(), None, Path("run"))  # doctest: +SKIP
    """
    artifact = Path(artifact)
    if not artifact.is_file():
        raise ArtifactError(str(artifact), "file not found")
    if artifact.suffix == ".tflite" and b"ethos-u" not in artifact.read_bytes():
        # Vela replaces NPU subgraphs by the custom op "ethos-u"; without it the runner measures the CPU.
        raise ArtifactError(str(artifact), "not Vela-compiled (no ethos-u operator); run the FVP on the _vela.tflite")
    binary = find_fvp(target, fvp)
    if binary is None:
        return None, missing_note(target, artifact, None)
    runner = find_runner(artifact, target, runner_dir)
    if runner is None:
        return None, missing_note(target, artifact, binary)

    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    host_file = artifact.resolve()
    if runner.mode == "semihosting":
        # The FVP truncates the semihosting command line at 256 characters: run from work_dir
        # with a short name, as ExecuTorch's runner_utils does.
        host_file = work_dir / ("model" + artifact.suffix)
        if host_file.resolve() != artifact.resolve():
            shutil.copyfile(artifact, host_file)
    argv = fvp_command(target, binary, runner.elf, host_file, runner.mode, timeout_s, semihosting_cwd=work_dir.resolve())
    log_path = work_dir / f"fvp_{artifact.stem}.log"
    log.info("FVP run: %s", " ".join(argv))
    # The FVP stops itself at --timelimit; the wall-clock guard is a small margin on top of it.
    guard_s = timeout_s + max(2, timeout_s // 10)
    start = time.monotonic()
    try:
        proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=guard_s, cwd=work_dir)
    except subprocess.TimeoutExpired as exc:
        _save(log_path, exc.output)
        raise StepError(f"FVP {binary.name}", str(artifact), f"no result after {guard_s} s (log: {log_path})") from None
    except OSError as exc:
        raise StepError(f"FVP {binary.name}", str(artifact), f"cannot start {binary} ({exc.strerror})") from None
    text = _save(log_path, proc.stdout)
    log.info("FVP %s finished in %.1f s, exit %d, log %s", binary.name, time.monotonic() - start, proc.returncode, log_path)
    problem = _problem(text)
    if proc.returncode != 0 or problem:
        why = problem or f"exit code {proc.returncode}"
        raise StepError(f"FVP {binary.name}", str(artifact), f"{why} (log: {log_path})")
    try:
        return parse_pmu_log(text, source=str(log_path), platform=binary.name, log_path=str(log_path)), None
    except ArtifactError as err:
        raise StepError(f"FVP {binary.name}", str(artifact), f"{err.problem} (log: {log_path})") from None


def _save(path: Path, data: bytes | str | None) -> str:
    text = data.decode(errors="replace") if isinstance(data, bytes) else (data or "")
    text = text.replace("\r\n", "\n")
    path.write_text(text)
    return text


def _problem(text: str) -> str | None:
    """The first line run_fvp.sh would call a problem: fatal/error log lines, hard faults, time limit."""
    for line in text.splitlines():
        s = line.strip()
        if s.startswith(("F ", "E ", "F:", "E:", "[critical]", "ERROR - ")) or "Hard fault" in s \
                or "Simulation is stopping. Reason: CPU time has been exceeded" in s:
            return s[:200]
    return None
