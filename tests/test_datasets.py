"""Data sets: IDX (gzip and plain), .npz, and one clear DatasetError for each kind of bad file."""
from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest

from condition.datasets import IDX_FILES, load_dataset, read_idx
from condition.errors import DatasetError


def _idx_bytes(arr: np.ndarray) -> bytes:
    code = {np.uint8: 0x08, np.int32: 0x0C}[arr.dtype.type]
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape)
    return header + arr.astype(arr.dtype.newbyteorder(">")).tobytes()


def _write_idx_folder(folder, gz: bool, n_train: int = 12, n_test: int = 5):
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (n_train, 4, 4), dtype=np.uint8),
        "y_train": rng.integers(0, 3, n_train, dtype=np.uint8),
        "x_test": rng.integers(0, 256, (n_test, 4, 4), dtype=np.uint8),
        "y_test": rng.integers(0, 3, n_test, dtype=np.uint8),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for key, stem in IDX_FILES.items():
        data = _idx_bytes(arrays[key])
        if gz:
            (folder / (stem + ".gz")).write_bytes(gzip.compress(data))
        else:
            (folder / stem).write_bytes(data)
    return arrays


@pytest.mark.parametrize("gz", [True, False])
def test_idx_folder_round_trip(tmp_path, gz) -> None:
    arrays = _write_idx_folder(tmp_path / "mnist", gz)
    ds = load_dataset(str(tmp_path / "mnist"))
    assert ds.name == "mnist"
    np.testing.assert_array_equal(ds.x_train, arrays["x_train"])
    np.testing.assert_array_equal(ds.y_test, arrays["y_test"].astype(np.int64))
    assert ds.input_shape == (4, 4)
    assert ds.normalised("test").max() <= 1.0 and ds.normalised("test").dtype == np.float32
    sub = ds.subset(train=3, test=2)
    assert len(sub.x_train) == 3 and len(sub.y_test) == 2


def test_read_idx_int32_big_endian(tmp_path) -> None:
    arr = np.arange(6, dtype=np.int32).reshape(2, 3) - 2
    (tmp_path / "a.idx").write_bytes(_idx_bytes(arr))
    np.testing.assert_array_equal(read_idx(tmp_path / "a.idx"), arr)


def test_npz(tmp_path) -> None:
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "d.npz", x_train=rng.random((8, 5, 5, 1)), y_train=np.arange(8) % 2,
             x_test=rng.random((3, 5, 5, 1)), y_test=np.arange(3) % 2)
    ds = load_dataset(str(tmp_path / "d.npz"))
    assert ds.input_shape == (5, 5, 1) and ds.num_classes == 2 and ds.name == "d"


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda d: (d / "train-images-idx3-ubyte.gz").write_bytes(b"not gzip at all"), "cannot read"),
        (lambda d: (d / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(b"\x01\x02\x03\x04junk")), "bad magic"),
        (lambda d: (d / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(np.zeros((12, 4, 4), np.uint8))[:-5])), "truncated"),
        (lambda d: (d / "t10k-labels-idx1-ubyte.gz").unlink(), "missing t10k-labels"),
        (lambda d: (d / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(np.zeros(4, np.uint8)))), "labels"),
    ],
)
def test_corrupt_idx_folders(tmp_path, make, message) -> None:
    folder = tmp_path / "bad"
    _write_idx_folder(folder, gz=True)
    make(folder)
    with pytest.raises(DatasetError, match=message):
        load_dataset(str(folder))


def test_bad_npz_and_missing_paths(tmp_path) -> None:
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DatasetError, match="not a readable .npz"):
        load_dataset(str(tmp_path / "junk.npz"))
    np.savez(tmp_path / "partial.npz", x_train=np.zeros((2, 2, 2)))
    with pytest.raises(DatasetError, match="missing arrays"):
        load_dataset(str(tmp_path / "partial.npz"))
    with pytest.raises(DatasetError, match="no such file"):
        load_dataset(str(tmp_path / "nowhere"))
    (tmp_path / "data.csv").write_text("1,2\n")
    with pytest.raises(DatasetError, match="unsupported"):
        load_dataset(str(tmp_path / "data.csv"))


def test_every_error_is_one_line(tmp_path) -> None:
    with pytest.raises(DatasetError) as err:
        load_dataset(str(tmp_path / "nowhere.npz"))
    assert "\n" not in str(err.value)
