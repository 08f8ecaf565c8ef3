"""Every run computes with the same number of threads, wherever it runs.

Float training in torch gives different weights with 1 and 2 intra-op threads (the GEMM splits
its sums differently), so a configuration run alone (default: one thread per core) and inside
`condition compare` (one thread per worker) gave different artifacts under one configuration hash.
A run therefore pins its compute threads to COMPUTE_THREADS before any framework op runs, the same
way on the CLI, in compare's Ray workers and in tests; the number is part of the run identity and
of the float cache key. One thread, because compare already ran its cells single-threaded (so its
results and speed stay as they were) and on a busy machine torch's second OpenMP thread costs far
more than it gives (bench/results/speed.md; on a quiet one a standalone run may train slower). The
TOSA reference model's worker pool is not pinned: it runs int8 arithmetic whose result does not
depend on how images are spread over processes.

One exception, because it gives the same bits at any thread count: MKL's GEMMs in its strict
conditional-numerical-reproducibility mode (MKL_CBWR=<branch>,STRICT, set here before torch loads
MKL). A torch model whose training runs only such GEMMs and element-wise ops (a Linear/ReLU MLP,
frontends/torch/train.py `thread_independent`) trains on all the run's cores (`run_cores`: the
CPUs compare gave its cell, else this process's); tests/test_threads.py checks the bytes. Its
identity keeps COMPUTE_THREADS: the weights are those one thread computes.

    pin_thread_env()                              # at the start of a run, before the framework loads
    load_frontend("torch").pin_threads(COMPUTE_THREADS)
"""
from __future__ import annotations

import os

COMPUTE_THREADS = 1
# read by the BLAS/OpenMP runtimes and by TensorFlow when they start
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")


RUN_CORES_ENV = "CONDITION_RUN_CORES"  # set by compare's worker to the CPUs its cell was given


def pin_thread_env(threads: int = COMPUTE_THREADS) -> None:
    """Before tensorflow/torch are imported: both size their thread pools from these at start."""
    for name in THREAD_ENV:
        os.environ[name] = str(threads)
    set_mkl_strict_env()


def set_mkl_strict_env() -> None:
    """MKL_CBWR for MKL's strict mode, unless the user set it; read when torch loads MKL."""
    branch = mkl_strict_branch()
    if branch is not None:
        os.environ.setdefault("MKL_CBWR", branch)


def mkl_strict_branch() -> str | None:
    """MKL's strict reproducibility mode on the widest instruction set this CPU runs; None when
    neither AVX-512 nor AVX2 is there (or not on Linux), and then every run computes on one thread."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return None
    if {"avx512f", "avx512cd", "avx512bw", "avx512dq", "avx512vl"} <= set(flags):
        return "AVX512,STRICT"
    if {"avx2", "fma"} <= set(flags):
        return "AVX2,STRICT"
    return None


def run_cores() -> int:
    """The cores this run may compute on: compare's cell CPUs, else this process's CPUs."""
    try:
        available = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        available = os.cpu_count() or 1
    return max(1, min(available, int(os.environ.get(RUN_CORES_ENV, available))))
