"""Image-classification data sets: Fashion-MNIST from Debian by default, or a user's IDX / .npz.

Framework-free (numpy only): each frontend turns the uint8 arrays into its own tensors.
"""
from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from condition.errors import DatasetError

DEFAULT_DATASET = "fashion-mnist"
FASHION_MNIST_DIR = Path(os.environ.get("CONDITION_FASHION_MNIST_DIR", "/usr/share/datasets/fashion-mnist"))
IDX_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


@dataclass(frozen=True)
class Dataset:
    name: str
    x_train: np.ndarray  # (N, H, W) or (N, H, W, C), uint8 or float
    y_train: np.ndarray  # (N,) int64
    x_test: np.ndarray
    y_test: np.ndarray

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def num_classes(self) -> int:
        return int(max(self.y_train.max(), self.y_test.max())) + 1

    def subset(self, train: int | None = None, test: int | None = None) -> "Dataset":
        """First `train` / `test` examples: small, deterministic subsets for tests and --quick."""
        return Dataset(
            self.name,
            self.x_train[:train] if train else self.x_train,
            self.y_train[:train] if train else self.y_train,
            self.x_test[:test] if test else self.x_test,
            self.y_test[:test] if test else self.y_test,
        )

    def normalised(self, split: str) -> np.ndarray:
        """float32 images in [0, 1] (the seed's ToTensor scaling), channels last."""
        x = self.x_train if split == "train" else self.x_test
        if x.dtype == np.uint8:
            return x.astype(np.float32) / 255.0
        return x.astype(np.float32)


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (gzip or plain)."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise DatasetError(str(path), "file not found") from None
    except (OSError, EOFError) as exc:
        raise DatasetError(str(path), f"cannot read ({exc})") from None
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise DatasetError(str(path), "not an IDX file (bad magic number)")
    ndim = data[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise DatasetError(str(path), "truncated IDX header")
    shape = struct.unpack(">" + "I" * ndim, data[4:header])
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - header != expected:
        raise DatasetError(str(path), f"IDX payload is {len(data) - header} bytes, header promises {expected} (truncated or corrupt)")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)


def _find_idx(folder: Path, stem: str) -> Path:
    for cand in (stem + ".gz", stem, stem.replace("-idx", ".idx") + ".gz", stem.replace("-idx", ".idx")):
        if (folder / cand).is_file():
            return folder / cand
    raise DatasetError(str(folder), f"missing {stem}[.gz]")


def load_idx_folder(folder: str | Path, name: str | None = None) -> Dataset:
    folder = Path(folder)
    arrays = {key: read_idx(_find_idx(folder, stem)) for key, stem in IDX_FILES.items()}
    return _checked(name or folder.name, **arrays, where=str(folder))


def load_npz(path: str | Path) -> Dataset:
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in IDX_FILES if k not in z.files]
            if missing:
                raise DatasetError(str(path), f"missing arrays {', '.join(missing)} (expected x_train, y_train, x_test, y_test)")
            arrays = {k: z[k] for k in IDX_FILES}
    except DatasetError:
        raise
    except FileNotFoundError:
        raise DatasetError(str(path), "file not found") from None
    except Exception as exc:  # zipfile.BadZipFile, ValueError, OSError
        raise DatasetError(str(path), f"not a readable .npz ({type(exc).__name__})") from None
    return _checked(path.stem, **arrays, where=str(path))


def _checked(name: str, x_train, y_train, x_test, y_test, where: str) -> Dataset:
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        if x.ndim not in (3, 4):
            raise DatasetError(where, f"{split} images have shape {x.shape}, expected (N, H, W) or (N, H, W, C)")
        if y.ndim != 1 or len(y) != len(x):
            raise DatasetError(where, f"{split} has {len(x)} images but labels of shape {y.shape}")
        if len(x) == 0:
            raise DatasetError(where, f"{split} split is empty")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DatasetError(where, f"train images {x_train.shape[1:]} and test images {x_test.shape[1:]} differ in shape")
    return Dataset(name, np.ascontiguousarray(x_train), y_train.astype(np.int64), np.ascontiguousarray(x_test), y_test.astype(np.int64))


def load_dataset(spec: str | None = None) -> Dataset:
    """`fashion-mnist` (Debian package), a folder of IDX files, or an .npz file."""
    spec = spec or DEFAULT_DATASET
    if spec == DEFAULT_DATASET:
        if not FASHION_MNIST_DIR.is_dir():
            raise DatasetError(
                str(FASHION_MNIST_DIR),
                "Fashion-MNIST is not installed (run ./setup.sh, or `apt-get install dataset-fashion-mnist`, or pass --dataset PATH)",
            )
        return load_idx_folder(FASHION_MNIST_DIR, name=DEFAULT_DATASET)
    path = Path(spec)
    if path.is_dir():
        return load_idx_folder(path)
    if path.suffix == ".npz":
        return load_npz(path)
    if not path.exists():
        raise DatasetError(spec, "no such file or folder (give fashion-mnist, a folder of IDX files, or an .npz)")
    raise DatasetError(spec, "unsupported data set format (give a folder of IDX files or an .npz)")
