"""The Ray that every multi-run command (`compare`, `search`) runs on.

By default an embedded local Ray is started on this machine's cores and shut down when the command
ends, also on Ctrl-C and on errors; its logs are copied to OUT/logs/ray. It exposes as little as
Ray allows: node address 127.0.0.1, no dashboard, token authentication kept on. Ray 2.60's GCS,
raylet and worker gRPC servers bind the node address, so they are on loopback here (on a cluster of
real addresses they listen on every interface and the token guards them: README, "Ray clusters and
security"). `--address` (or RAY_ADDRESS) connects to an existing cluster instead, which is left
running; a token available to this user is sent (compare/ray_auth.py). What Ray's C++ side prints
while connecting and disconnecting (GCS client retries, `InvalidAuthToken` warnings) goes to
OUT/logs/ray-driver.log, not the terminal. Ray's own session folder holds Unix sockets whose paths
may not exceed 107 bytes, so it lives in a short private folder under the system temp dir, never under OUT.

    with ray_session(out, address=None) as session:
        session.cpus            # CPUs the cluster offers
"""
from __future__ import annotations

import contextlib
import logging
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from condition.compare.ray_auth import auth_failure_hint, is_auth_failure, turn_token_mode_on, use_available_token
from condition.errors import ClusterError, ConditionError, one_line

ADDRESS_ENV = "RAY_ADDRESS"
LOCAL_NODE_IP = "127.0.0.1"  # the embedded Ray's node address: its object manager and workers are reached on loopback
DRIVER_LOG = "ray-driver.log"  # OUT/logs/<this>: what Ray's C++ side printed while connecting and disconnecting


@dataclass(frozen=True)
class Session:
    address: str | None  # None: the embedded local Ray this command started
    cpus: int
    node_ip: str  # the driver's node: where OUT lives
    node_id: str = ""  # the driver's Ray node (several nodes can share one IP)

    @property
    def embedded(self) -> bool:
        return self.address is None


def resolve_address(address: str | None) -> str | None:
    """The cluster to use: --address, else RAY_ADDRESS, else None (start an embedded Ray)."""
    return address or os.environ.get(ADDRESS_ENV) or None


@contextlib.contextmanager
def ray_session(out: str | Path, address: str | None = None, num_cpus: int | None = None) -> Iterator[Session]:
    """Connect to (or start) Ray for the duration of a command; see the module docstring."""
    global _current
    import ray

    if ray.is_initialized():  # a caller (a library user, a test, a search's references) already connected: use that Ray as is
        yield _current or _session(None)
        return
    address = resolve_address(address)
    os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")  # Ctrl-C raises here; our `finally` cleans up
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    log = Path(out) / "logs" / DRIVER_LOG
    log.parent.mkdir(parents=True, exist_ok=True)
    temp = None
    start = log.stat().st_size if log.is_file() else 0
    try:
        if address:
            token = use_available_token()
            try:
                with stderr_to(log):
                    ray.init(address=address, log_to_driver=False, configure_logging=False)
            except Exception as exc:  # noqa: BLE001 — say why in one line: a token, or what Ray said
                if is_auth_failure(_since(log, start) + str(exc)):
                    raise ClusterError(address, auth_failure_hint(token)) from None
                raise
        else:
            turn_token_mode_on()  # Ray's default for a new local Ray, kept even when RAY_AUTH_MODE says otherwise
            # Ray's default token auth, without its warning saying so on every start
            logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
            temp = tempfile.mkdtemp(prefix="condition-ray-")
            with stderr_to(log), loopback_node_ip():
                ray.init(address="local", num_cpus=num_cpus or usable_cores(), include_dashboard=False, log_to_driver=False,
                         configure_logging=False, _temp_dir=temp, _node_ip_address=LOCAL_NODE_IP)
    except ConditionError:
        _cleanup(temp, out)
        raise
    except Exception as exc:  # noqa: BLE001 — any start/connect failure is one line for the user
        _cleanup(temp, out)
        raise ClusterError(address, f"{type(exc).__name__}: {one_line(exc, limit=300)} (Ray's output: {log})") from None
    _current = _session(address)
    try:
        yield _current
    finally:
        _current = None
        with stderr_to(log):
            ray.shutdown()
        _cleanup(temp, out)


_current: Session | None = None  # the session ray_session opened, for nested use (a search's reference cells)


@contextlib.contextmanager
def loopback_node_ip() -> Iterator[None]:
    """While a local Ray starts, make 127.0.0.1 its node address. Ray 2.60 replaces a loopback
    `_node_ip_address` by the machine's outward IP (services.resolve_ip_for_localhost) unless "Ray
    clusters" are off, as they are on macOS/Windows (ray_constants.ENABLE_RAY_CLUSTER, read when
    ray loads, hence set on the module): then the node, its runtime-env agent and the object manager
    are addressed on loopback. Restored afterwards, so a later connection to a real cluster in this
    process resolves its own IP again."""
    from ray._private import ray_constants

    saved = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved


@contextlib.contextmanager
def stderr_to(path: Path) -> Iterator[None]:
    """File descriptor 2 (where Ray's C++ logging writes before its log files are set up) appended to
    `path`; Python's sys.stderr too, since it writes to the same descriptor."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(path, "a") as f:
            os.dup2(f.fileno(), 2)
            try:
                yield
            finally:
                sys.stderr.flush()
                os.dup2(saved, 2)
    finally:
        os.close(saved)


def _since(path: Path, offset: int) -> str:
    try:
        with open(path, errors="replace") as f:
            f.seek(offset)
            return f.read()
    except OSError:
        return ""


def _session(address: str | None) -> Session:
    import ray

    return Session(address, max(1, int(ray.cluster_resources().get("CPU", 1))), ray.util.get_node_ip_address(),
                   ray.get_runtime_context().get_node_id())


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
