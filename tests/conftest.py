"""Shared test markers. Tests that train on Fashion-MNIST skip when the Debian package (or
CONDITION_FASHION_MNIST_DIR) is missing, instead of failing on a machine without it."""
import pytest

from condition.datasets import FASHION_MNIST_DIR
from condition.threads import set_mkl_strict_env

set_mkl_strict_env()  # as every run does, before torch loads MKL (condition/threads.py)

needs_fashion_mnist = pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(),
                                         reason="Fashion-MNIST (Debian package dataset-fashion-mnist) not installed")


@pytest.fixture(scope="session")
def shared_ray():
    """One local Ray for the in-process compare/search tests of this pytest process (each xdist worker
    has its own): `ray_session` uses an already-connected Ray as is, so its workers stay warm between
    tests instead of each test starting Ray and importing the frameworks again. Starting and stopping
    an embedded Ray is tested by the subprocess tests in test_compare_ray.py."""
    import logging
    import shutil
    import tempfile

    import ray

    logging.getLogger("ray._private.authentication.authentication_token_setup").setLevel(logging.ERROR)
    temp = tempfile.mkdtemp(prefix="ctr-", dir="/tmp")  # short: Ray's socket paths must stay short
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False,
             _temp_dir=temp)
    try:
        yield
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


def pytest_collection_modifyitems(config, items):
    """Files with slow tests first, so the two xdist processes start on them and the many short files
    fill in behind (pyproject: --dist=loadfile --no-loadscope-reorder): queued last, one long file
    kept one process busy while the other had finished."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)
