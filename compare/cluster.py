"""The Ray that every multi-run command (`compare`, `search`) runs on.

By default an embedded local Ray is started on this machine's cores (no dashboard, nothing printed
to the terminal) and shut down when the command ends, also on Ctrl-C and on errors; its logs are
copied to OUT/logs/ray. `--address` (or RAY_ADDRESS) connects to an existing cluster instead, which
is left running. Ray's own session folder holds Unix sockets whose paths may not exceed 107 bytes,
so it lives in a short private folder under the system temp dir, never under OUT.

    with ray_session(out, address=None) as session:
        session.cpus            # CPUs the cluster offers
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from condition.errors import ClusterError, ConditionError, one_line

ADDRESS_ENV = "RAY_ADDRESS"


@dataclass(frozen=True)
class Session:
    address: str | None  # None: the embedded local Ray this command started
    cpus: int
    node_ip: str  # the driver's node: where OUT lives

    @property
    def embedded(self) -> bool:
        return self.address is None


def resolve_address(address: str | None) -> str | None:
    """The cluster to use: --address, else RAY_ADDRESS, else None (start an embedded Ray)."""
    return address or os.environ.get(ADDRESS_ENV) or None


@contextlib.contextmanager
def ray_session(out: str | Path, address: str | None = None, num_cpus: int | None = None) -> Iterator[Session]:
    """Connect to (or start) Ray for the duration of a command; see the module docstring."""
    import ray

    if ray.is_initialized():  # a caller (a library user, a test) already connected: use that Ray as is
        yield _session(None)
        return
    address = resolve_address(address)
    os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")  # Ctrl-C raises here; our `finally` cleans up
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    temp = None
    try:
        if address:
            ray.init(address=address, log_to_driver=False, configure_logging=False)
        else:
            # Ray's default token auth, without its warning saying so on every start
            logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
            temp = tempfile.mkdtemp(prefix="condition-ray-")
            ray.init(address="local", num_cpus=num_cpus or usable_cores(), include_dashboard=False, log_to_driver=False,
                     configure_logging=False, _temp_dir=temp)
    except ConditionError:
        raise
    except Exception as exc:  # noqa: BLE001 — any start/connect failure is one line for the user
        _cleanup(temp, out)
        raise ClusterError(address, f"{type(exc).__name__}: {one_line(exc, limit=300)}") from None
    try:
        yield _session(address)
    finally:
        ray.shutdown()
        _cleanup(temp, out)


def _session(address: str | None) -> Session:
    import ray

    return Session(address, max(1, int(ray.cluster_resources().get("CPU", 1))), ray.util.get_node_ip_address())


def _cleanup(temp: str | None, out: str | Path) -> None:
    """Keep the embedded session's logs in OUT/logs/ray, then remove its temp folder."""
    if temp is None:
        return
    logs = Path(temp) / "session_latest" / "logs"
    if logs.is_dir():
        dest = Path(out) / "logs" / "ray"
        shutil.rmtree(dest, ignore_errors=True)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(logs, dest, symlinks=True, ignore_dangling_symlinks=True, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("*.sock", "old"))
    shutil.rmtree(temp, ignore_errors=True)


def usable_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)
