"""Every run computes with the same number of threads, wherever it runs.

Float training in torch gives different weights with 1 and 2 intra-op threads (the GEMM splits
its sums differently), so a configuration run alone (default: one thread per core) and inside
`condition compare` (one thread per worker) gave different artifacts under one configuration hash.
A run therefore pins its compute threads to COMPUTE_THREADS before any framework op runs, the same
way on the CLI, in compare's Ray workers and in tests; the number is part of the run identity and
of the float cache key. One thread, because compare already ran its cells single-threaded (so its
results and speed stay as they were) and, for these small models, a second thread buys little
(see bench/results/speed.md). The TOSA reference model's worker pool is not pinned: it runs int8
arithmetic whose result does not depend on how images are spread over processes.

    pin_compute_threads("torch")   # at the start of a run, before training
"""
from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)

COMPUTE_THREADS = 1
# read by the BLAS/OpenMP runtimes and by TensorFlow when they start
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")


def pin_thread_env(threads: int = COMPUTE_THREADS) -> None:
    """Before tensorflow/torch are imported: both size their thread pools from these at start."""
    for name in THREAD_ENV:
        os.environ[name] = str(threads)


def pin_compute_threads(frontend: str) -> None:
    """Make the frontend's framework compute with COMPUTE_THREADS threads from here on.

    torch can change its pool at any time. TensorFlow takes its counts once, when its context
    starts (setting the same counts again is a no-op): if that already happened in this process
    with other counts (a test that used TF before any run), the run goes on and a warning says
    its bytes may differ."""
    pin_thread_env()
    if frontend == "torch":
        import torch

        torch.set_num_threads(COMPUTE_THREADS)
    elif frontend == "tf":
        from condition.frontends.tf import keras_modules  # sets TF_USE_LEGACY_KERAS before tensorflow loads

        threading = keras_modules()[0].config.threading
        try:
            threading.set_intra_op_parallelism_threads(COMPUTE_THREADS)
            threading.set_inter_op_parallelism_threads(COMPUTE_THREADS)
        except RuntimeError:  # context already initialised with other counts
            log.warning("TensorFlow started before the run with %s intra-op threads, not %s: this run's "
                        "artifacts may differ from the same configuration's elsewhere",
                        threading.get_intra_op_parallelism_threads() or "default", COMPUTE_THREADS)
