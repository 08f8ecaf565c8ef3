"""`condition doctor`: what is installed and usable, which FVPs and runner ELFs were found, what is
missing and the one command or document that fixes it. Exit 0 when the embedded default (Vela
compile + estimate) works. Quick: versions come from package metadata, tensorflow and torch are
never imported."""
from __future__ import annotations

import gzip
import importlib
import os
import platform
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import click

from condition.errors import ConditionError, one_line

PACKAGES = (
    ("tensorflow", "tensorflow"),
    ("tf-keras", "tf-keras"),
    ("tfmot", "tensorflow-model-optimization"),
    ("torch", "torch"),
    ("executorch", "executorch"),
    ("torchao", "torchao"),
    ("Vela", "ethos-u-vela"),
    ("TOSA reference model", "tosa-tools"),
    ("Ray", "ray"),
)
# what a package's version decides, shown beside it
PACKAGE_NOTES = {"Vela": "compiles both frontends' artifacts in-process, ExecuTorch's Ethos-U delegate included; "
                         "part of every run's identity"}
SETUP_FIX = "./setup.sh (creates .venv with every pinned dependency)"
FVP_FIX = "README.md, 'Measuring on an FVP (bring your own)'"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = False  # required for the embedded default (Vela estimate)


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def _import_check(name: str, module: str, fix: str, required: bool) -> Check:
    try:
        importlib.import_module(module)
    except Exception as exc:  # any import failure means "not usable", whatever its kind
        return Check(name, False, f"import {module} failed: {type(exc).__name__}: {one_line(exc)}", fix, required)
    return Check(name, True, f"import {module}", required=required)


def _vela_config_check() -> Check:
    from condition.backend.target import Target, vela_config_path

    path = Path(vela_config_path(Target()))
    if path.is_file():
        return Check("Vela system configs", True, str(path), required=True)
    return Check("Vela system configs", False, f"{path} not found",
                 "reinstall: .venv/bin/pip install --force-reinstall ethos-u-vela==5.2.0", True)


def _dataset_check() -> Check:
    from condition.datasets import FASHION_MNIST_DIR, IDX_FILES

    fix = "sudo apt-get install dataset-fashion-mnist (or pass --dataset PATH to your IDX/.npz files)"
    for stem in IDX_FILES.values():
        found = [p for p in (FASHION_MNIST_DIR / (stem + ".gz"), FASHION_MNIST_DIR / stem) if p.is_file()]
        if not found:
            return Check("data set fashion-mnist", False, f"{FASHION_MNIST_DIR / stem}[.gz] missing", fix)
        opener = gzip.open if found[0].suffix == ".gz" else open
        try:
            with opener(found[0], "rb") as f:
                magic = f.read(4)
        except OSError as exc:
            return Check("data set fashion-mnist", False, f"{found[0]}: cannot read ({exc})", fix)
        if len(magic) < 4 or magic[:2] != b"\0\0":
            return Check("data set fashion-mnist", False, f"{found[0]}: not an IDX file", fix)
    return Check("data set fashion-mnist", True, str(FASHION_MNIST_DIR))


def _fvp_checks() -> list[Check]:
    from condition.backend.fvp import FVP_BINARIES, FVP_ENV, RUNNER_ENV, find_fvp, find_runner
    from condition.backend.target import Target

    checks = []
    for family, accelerator in (("u55", "ethos-u55-128"), ("u65", "ethos-u65-256"), ("u85", "ethos-u85-128")):
        target = Target.default_for(accelerator)
        fvp = find_fvp(target)
        checks.append(Check(
            f"FVP for {family.upper()}", fvp is not None,
            str(fvp) if fvp else f"{FVP_BINARIES[family]} not in {FVP_ENV} or PATH",
            f"get the Corstone FVP from Arm, set {FVP_ENV}; {FVP_FIX}",
        ))
        for suffix, kind in ((".pte", "arm_executor_runner (.pte)"), (".tflite", "TFLite-Micro runner (.tflite)")):
            runner = find_runner(Path("/nonexistent") / f"model{suffix}", target)
            checks.append(Check(
                f"  {kind} for {family.upper()}", runner is not None,
                f"{runner.elf} ({runner.mode})" if runner else f"none in {RUNNER_ENV}",
                f"build it once and set {RUNNER_ENV}; {FVP_FIX}",
            ))
    return checks


def ray_lines() -> list[str]:
    """How `compare`/`search` would reach Ray from this shell: the cluster address and auth mode
    variables, and where Ray would find a token (its place only: the token is never printed)."""
    from condition.compare.ray_auth import AUTH_MODE_ENV, TOKEN_ENV, TOKEN_PATH_ENV, find_token

    def env(name: str) -> str:
        value = os.environ.get(name)
        return f"{name}={value}" if value else f"{name} not set"

    address = os.environ.get("RAY_ADDRESS")
    token = find_token()
    return [
        f"  cluster     {env('RAY_ADDRESS')}" + ("" if address else " (compare/search start an embedded Ray unless --address is given)"),
        f"  auth mode   {env(AUTH_MODE_ENV)}" + ("" if os.environ.get(AUTH_MODE_ENV) else
                                                  " (condition turns token mode on when a token is found)"),
        f"  token       {'found: ' + token.where if token else f'none ({TOKEN_ENV}, {TOKEN_PATH_ENV}, ~/.ray/auth_token)'}",
    ]


def collect() -> tuple[dict[str, str | None], list[Check]]:
    """Package versions and every check, without printing (the test and the command share it)."""
    versions = {label: _version(dist) for label, dist in PACKAGES}
    checks = [
        _import_check("Vela", "ethosu.vela.vela", ".venv/bin/pip install ethos-u-vela==5.2.0 (or " + SETUP_FIX + ")", True),
        _vela_config_check(),
        _import_check("TOSA reference model", "tosa_reference_model",
                      ".venv/bin/pip install 'executorch[ethos-u]==1.5.1' (or " + SETUP_FIX + ")", False),
        _dataset_check(),
        *_fvp_checks(),
    ]
    return versions, checks


@click.command("doctor")
def doctor() -> None:
    """Show what is installed, which FVPs and runner ELFs were found, and what is missing.

    Exit code 0 when the embedded default (Vela compile and performance estimate) works.
    """
    versions, checks = collect()
    width = max(len(k) for k in versions)
    lines = [f"condition doctor · Python {platform.python_version()}", "", "packages:"]
    for label, version in versions.items():
        note = f"  ({PACKAGE_NOTES[label]})" if version and label in PACKAGE_NOTES else ""
        lines.append(f"  {label:<{width}}  {version or 'not installed'}{note}")
    lines += ["", "ray (compare, search):", *ray_lines()]
    lines += ["", "checks:"]
    cwidth = max(len(c.name) for c in checks)
    for c in checks:
        lines.append(f"  {'ok  ' if c.ok else 'MISS'}  {c.name:<{cwidth}}  {c.detail}")
    missing = [c for c in checks if not c.ok]
    missing_pkgs = [label for label, v in versions.items() if v is None]
    if missing_pkgs or missing:
        lines += ["", "missing, and what fixes it:"]
        if missing_pkgs:
            lines.append(f"  - packages {', '.join(missing_pkgs)}: {SETUP_FIX}")
        by_fix: dict[str, list[str]] = {}
        for c in missing:  # one line per fix, naming everything it fixes
            by_fix.setdefault(c.fix, []).append(c.name.strip())
        for fix, names in by_fix.items():
            lines.append(f"  - {', '.join(names)}: {fix}")
    default_ok = all(c.ok for c in checks if c.required)
    lines += ["", "embedded default (Vela estimate): " + ("works" if default_ok else "NOT usable")]
    if not any(c.ok for c in checks if c.name.startswith("FVP")):
        lines.append("FVP measurements: none (bring your own FVP; figures stay Vela estimates)")
    click.echo("\n".join(lines))
    if not default_ok:
        # A ConditionError (one line on stderr, exit 1): cli.main drops the return code of a command.
        broken = ", ".join(c.name for c in checks if c.required and not c.ok)
        raise ConditionError(f"the embedded default (Vela estimate) is not usable: {broken} (see above)")
