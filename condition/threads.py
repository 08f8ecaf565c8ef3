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

    pin_thread_env()                              # at the start of a run, before the framework loads
    load_frontend("torch").pin_threads(COMPUTE_THREADS)
"""
from __future__ import annotations

import os

COMPUTE_THREADS = 1
# read by the BLAS/OpenMP runtimes and by TensorFlow when they start
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")


def pin_thread_env(threads: int = COMPUTE_THREADS) -> None:
    """Before tensorflow/torch are imported: both size their thread pools from these at start."""
    for name in THREAD_ENV:
        os.environ[name] = str(threads)
