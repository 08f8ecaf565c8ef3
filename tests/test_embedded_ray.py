"""The embedded Ray exposes as little as Ray 2.60 allows: node address 127.0.0.1, every listening socket
of its processes on loopback, no dashboard, and token authentication on (kept even when the shell says
RAY_AUTH_MODE=disabled): a client without the token is refused. Run in a fresh process, because the
tests' shared Ray may already be connected in this one."""
from __future__ import annotations

import json
import os
import subprocess
import sys

SCRIPT = r'''
import json, os, socket, subprocess, sys
import ray
from condition.compare.cluster import ray_session


def tree(root):
    children = {}
    for p in os.listdir("/proc"):
        if p.isdigit():
            try:
                ppid = int(open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            children.setdefault(ppid, []).append(int(p))
    found, todo = set(), [root]
    while todo:
        p = todo.pop()
        found.add(p)
        todo += children.get(p, [])
    return found


def listening(pids):
    """(address, port) of every TCP socket in LISTEN state that one of `pids` holds, from /proc."""
    inodes = set()
    for pid in pids:
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:["):
                    inodes.add(link[8:-1])
        except OSError:
            continue
    found = []
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        for line in open(table).read().splitlines()[1:]:
            cols = line.split()
            if cols[3] != "0A" or cols[9] not in inodes:
                continue
            raw, port = cols[1].split(":")
            data = bytes.fromhex(raw)
            data = b"".join(data[i:i + 4][::-1] for i in range(0, len(data), 4))  # /proc prints 32-bit words host-endian
            found.append((socket.inet_ntop(family, data), int(port, 16)))
    return found


with ray_session(sys.argv[1], num_cpus=1) as session:
    ray.get(ray.remote(lambda: 1).remote())  # a worker process, with its own gRPC server
    gcs = ray.get_runtime_context().gcs_address
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    env["HOME"] = sys.argv[2]  # no token there
    probe = subprocess.run([sys.executable, "-c", "import sys\nfrom ray._raylet import GcsClient\ntry:\n    GcsClient(address=sys.argv[1])\n"
                            "    print('connected')\nexcept Exception as e:\n    print(type(e).__name__, e)", gcs],
                           env=env, capture_output=True, text=True, timeout=120)
    print(json.dumps({"node_ip": session.node_ip, "gcs": gcs, "sockets": listening(tree(os.getpid())),
                      "probe": probe.stdout.strip()[:300], "mode": os.environ.get("RAY_AUTH_MODE"),
                      "dashboard": bool(ray._private.worker._global_node.address_info.get("webui_url"))}))
'''


def test_embedded_ray_is_on_loopback_without_dashboard_and_wants_its_token(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "HOME": str(home), "RAY_ADDRESS": "", "RAY_AUTH_MODE": "disabled"}
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "out"), str(tmp_path / "nobody")], env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["node_ip"] == "127.0.0.1" and seen["gcs"].startswith("127.0.0.1:")
    addresses = {address for address, _ in seen["sockets"]}
    assert len(seen["sockets"]) >= 5 and addresses <= {"127.0.0.1", "::ffff:127.0.0.1"}, seen["sockets"]  # GCS, raylet, driver, worker…
    assert seen["mode"] == "token" and seen["probe"].startswith("AuthenticationError") and "InvalidAuthToken" in seen["probe"]
    assert (home / ".ray" / "auth_token").is_file()  # Ray's default: a new local Ray writes a token when there is none
    assert not seen["dashboard"]
    assert "gcs_client" not in done.stderr
