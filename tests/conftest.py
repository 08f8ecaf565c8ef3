"""Shared test markers. Tests that train on Fashion-MNIST skip when the Debian package (or
CONDITION_FASHION_MNIST_DIR) is missing, instead of failing on a machine without it."""
import pytest

from condition.datasets import FASHION_MNIST_DIR

needs_fashion_mnist = pytest.mark.skipif(not FASHION_MNIST_DIR.is_dir(),
                                         reason="Fashion-MNIST (Debian package dataset-fashion-mnist) not installed")
