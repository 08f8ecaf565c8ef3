"""Image-classification data sets: Fashion-MNIST from Debian by default (and a 32×32×3 variant made
from it), or a user's IDX folder, .npz or image folder (one sub-folder per class).

Framework-free (numpy, Pillow for image files): each frontend turns the channels-last arrays into
its own tensors.

    ds = load_dataset("flowers/", test_split=0.2, image_size="64")   # (N, 64, 64, 3) uint8
"""
from __future__ import annotations

import functools
import gzip
import os
import struct
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from condition import images
from condition.errors import ConfigError, DatasetError, UnseenLabelsError

DEFAULT_DATASET = "fashion-mnist"
FASHION_MNIST_32X32X3 = "fashion-mnist-32x32x3"  # resized to 32×32 and repeated to 3 channels, made on load
BUILTIN_DATASETS = (DEFAULT_DATASET, FASHION_MNIST_32X32X3)
DEFAULT_TEST_SPLIT = 0.2  # a single folder of class folders without --test-split
SPLIT_SEED = 0  # the split and the order of image folders do not follow --seed: every seed sees the same test set
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
    classes: tuple[str, ...] = ()  # class names, label order (image folders); empty = the labels are the names

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def num_classes(self) -> int:
        if self.classes:
            return len(self.classes)
        return max((int(y.max()) for y in (self.y_train, self.y_test) if len(y)), default=-1) + 1

    def subset(self, train: int | None = None, test: int | None = None) -> "Dataset":
        """First `train` / `test` examples: small, deterministic subsets for tests and --quick."""
        return replace(
            self,
            x_train=self.x_train[:train] if train else self.x_train,
            y_train=self.y_train[:train] if train else self.y_train,
            x_test=self.x_test[:test] if test else self.x_test,
            y_test=self.y_test[:test] if test else self.y_test,
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


def _idx_names(stem: str) -> list[str]:
    """The file names MNIST-style sets use: '-idx' or '.idx', gzip or plain, and idx4 for (N, H, W, C) images."""
    stems = [stem, stem.replace("idx3", "idx4")] if "idx3" in stem else [stem]
    return [n + gz for s in stems for n in (s, s.replace("-idx", ".idx")) for gz in (".gz", "")]


def _find_idx(folder: Path, stem: str) -> Path:
    for cand in _idx_names(stem):
        if (folder / cand).is_file():
            return folder / cand
    raise DatasetError(str(folder), f"missing {stem}[.gz]")


def _is_idx_folder(folder: Path) -> bool:
    return any((folder / n).is_file() for stem in IDX_FILES.values() for n in _idx_names(stem))


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
    """Channels-last images of one shape and dtype, integer labels from 0: anything else is one clear line."""
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        if x.ndim not in (3, 4):
            raise DatasetError(where, f"{split} images have shape {x.shape}, expected (N, H, W) or (N, H, W, C)")
        if x.ndim == 4 and x.shape[1] in (1, 3) and x.shape[3] > 4:
            raise DatasetError(where, f"{split} images have shape {x.shape}, which looks channels-first; save them "
                                      "channels-last, (N, H, W, C), e.g. x.transpose(0, 2, 3, 1)")
        if y.ndim == 2 and y.shape[0] == len(x) and y.shape[1] > 1:
            raise DatasetError(where, f"{split} labels have shape {y.shape} (one-hot?); give class indices, shape ({len(x)},)")
        if y.ndim != 1 or len(y) != len(x):
            raise DatasetError(where, f"{split} has {len(x)} images but labels of shape {y.shape}")
        if len(x) == 0:
            raise DatasetError(where, f"{split} split is empty")
        if not (np.issubdtype(y.dtype, np.integer) or (np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0))):
            raise DatasetError(where, f"{split} labels are {y.dtype} values that are not whole numbers; give class indices 0, 1, …")
        if y.min() < 0:
            raise DatasetError(where, f"{split} labels include {int(y.min())}; class indices start at 0")
        if not (np.issubdtype(x.dtype, np.integer) or np.issubdtype(x.dtype, np.floating)) or x.dtype == np.bool_:
            raise DatasetError(where, f"{split} images are {x.dtype}; give uint8 (0–255) or float images")
        if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all():
            raise DatasetError(where, f"{split} images hold NaN or infinite values")
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DatasetError(where, f"train images {x_train.shape[1:]} and test images {x_test.shape[1:]} differ in shape")
    x_train, x_test = (_as_uint8_if_integer(x, split, where) for x, split in ((x_train, "train"), (x_test, "test")))
    if x_train.dtype.kind != x_test.dtype.kind:
        raise DatasetError(where, f"train images are {x_train.dtype} and test images {x_test.dtype}; give both the same type")
    unseen = np.setdiff1d(np.unique(y_test), np.unique(y_train))
    if unseen.size:  # the model could never predict them: a capped accuracy with no reason given
        raise UnseenLabelsError(where, "test labels never seen in training", tuple(int(v) for v in unseen),
                                tuple(int(v) for v in np.unique(y_train)))
    return Dataset(name, np.ascontiguousarray(x_train), y_train.astype(np.int64), np.ascontiguousarray(x_test), y_test.astype(np.int64))


def _as_uint8_if_integer(x: np.ndarray, split: str, where: str) -> np.ndarray:
    """Integer images other than uint8 (e.g. int64 from numpy) are pixel values 0–255: uint8, so they
    are scaled to [0, 1] like uint8. Float images are used as they are (scale them yourself)."""
    if not np.issubdtype(x.dtype, np.integer) or x.dtype == np.uint8:
        return x
    if x.min() < 0 or x.max() > 255:
        raise DatasetError(where, f"{split} images are {x.dtype} in [{x.min()}, {x.max()}]; integer images must be pixel "
                                  "values 0–255 (or give float images)")
    return x.astype(np.uint8)


def parse_image_size(value: str | int | tuple[int, int] | list[int] | None, option: str = "--image-size") -> tuple[int, int] | None:
    """'32' → (32, 32); '32x48' (height × width, as Keras' image_size) → (32, 48); None stays None."""
    if value is None:
        return None
    try:
        if isinstance(value, bool):
            raise ValueError
        if isinstance(value, int):
            size = (value, value)
        elif isinstance(value, (tuple, list)):
            size = tuple(int(v) for v in value if not isinstance(v, bool))
            if len(size) != 2 or len(value) != 2:
                raise ValueError
        else:
            parts = str(value).lower().replace("×", "x").split("x")
            size = (int(parts[0]),) * 2 if len(parts) == 1 else tuple(int(p) for p in parts)
            if len(size) != 2:
                raise ValueError
    except (TypeError, ValueError):
        raise ConfigError(option, value, "not an image size", "give N for N×N, or HxW such as 32x48") from None
    if min(size) < 1 or max(size) > 4096:
        raise ConfigError(option, value, "each side must be 1 to 4096 pixels")
    return size  # type: ignore[return-value]


def check_test_split(value: float | None, option: str = "--test-split") -> float | None:
    if value is not None and (isinstance(value, bool) or not 0.0 < float(value) < 1.0):
        raise ConfigError(option, value, "must be a fraction between 0 and 1 (exclusive)",
                          "e.g. 0.2 keeps a fifth of each class for testing")
    return None if value is None else float(value)


def data_options(test_split: float | None = None, image_size: str | int | tuple[int, int] | None = None) -> dict[str, object]:
    """The set options only, for identities and cache keys: unset options leave existing hashes unchanged."""
    size = parse_image_size(image_size)
    split = check_test_split(test_split)
    return {k: v for k, v in (("test_split", split), ("image_size", None if size is None else list(size))) if v is not None}


def dataset_key(spec: str, test_split: float | None = None, image_size: str | int | tuple[int, int] | None = None) -> str:
    """`spec` itself when no option is set, else e.g. 'flowers[image_size=32x32,test_split=0.2]' (a cache key)."""
    opts = data_options(test_split, image_size)
    if not opts:
        return spec
    text = ",".join(f"{k}={'x'.join(map(str, v)) if isinstance(v, list) else v}" for k, v in sorted(opts.items()))
    return f"{spec}[{text}]"


def dataset_identity(spec: str, test_split: float | None = None,
                     image_size: str | int | tuple[int, int] | None = None) -> str | dict[str, object]:
    """What a trained float model depends on in the data (its cache key): a built-in by name, a file by
    path, size and mtime, an image folder by its files' count, bytes and newest mtime (images can be added
    inside class folders without the root changing), plus the set options. Unset options and the
    earlier kinds give the same key as before, so existing caches stay valid."""
    from condition.float_cache import file_identity

    path = Path(spec)
    if spec in BUILTIN_DATASETS:
        ident: str | dict[str, object] = spec
    elif path.is_dir() and not _is_idx_folder(path):
        stats = [f.stat() for f in path.rglob("*") if f.is_file()]
        ident = {"path": str(path.resolve()), "files": len(stats), "bytes": sum(st.st_size for st in stats),
                 "mtime_ns": max((st.st_mtime_ns for st in stats), default=0)}
    else:
        ident = file_identity(spec)
    opts = data_options(test_split, image_size)
    if not opts:
        return ident
    return {**(ident if isinstance(ident, dict) else {"name": ident}), **opts}


def load_image_folder(root: str | Path, test_split: float | None = None, image_size: str | int | tuple[int, int] | None = None) -> Dataset:
    """Class folders of images: `root/train/<class>/…` with `root/test/` (or `val/`), or `root/<class>/…` split
    stratified by `test_split` (default 0.2). Grey or RGB as found; both sets shuffled by a fixed seed, so the
    first N images (--train-limit, --eval-limit) hold every class."""
    root = Path(root)
    size = parse_image_size(image_size)
    split = check_test_split(test_split)
    pre_split = images.split_layout(root)
    if pre_split is not None:
        if split is not None:
            raise DatasetError(str(root), f"already split into train/ and {pre_split[1].name}/; --test-split applies to a "
                                          "single folder of class folders")
        train_files, test_files = images.scan(pre_split[0]), images.scan(pre_split[1])
        if set(train_files) != set(test_files):
            only_train = sorted(set(train_files) - set(test_files))
            only_test = sorted(set(test_files) - set(train_files))
            parts = ([f"{', '.join(only_train)} only in train/"] if only_train else []) + \
                    ([f"{', '.join(only_test)} only in {pre_split[1].name}/"] if only_test else [])
            raise DatasetError(str(root), "train/ and " + pre_split[1].name + "/ have different classes: " + "; ".join(parts))
        classes = sorted(train_files)
        train_paths, y_train = images.labelled(train_files, classes)
        test_paths, y_test = images.labelled(test_files, classes)
    else:
        files = images.scan(root)
        classes = sorted(files)
        paths, labels = images.labelled(files, classes)
        train_idx, test_idx = images.split_stratified(labels, DEFAULT_TEST_SPLIT if split is None else split, SPLIT_SEED)
        if len(test_idx) == 0:
            raise DatasetError(str(root), f"too few images ({len(paths)}, one per class) to keep any for testing; "
                                          "add images (a class needs two to give one to the test split)")
        train_paths, y_train = [paths[i] for i in train_idx], labels[train_idx]
        test_paths, y_test = [paths[i] for i in test_idx], labels[test_idx]
    mode = images.colour_mode(images.image_modes(train_paths + test_paths), str(root))
    x_train = images.read_images(train_paths, size, mode)
    x_test = images.read_images(test_paths, size, mode)
    if x_train.shape[1:] != x_test.shape[1:]:
        raise DatasetError(str(root), f"train images are {x_train.shape[1]}×{x_train.shape[2]} and test images "
                                      f"{x_test.shape[1]}×{x_test.shape[2]} (give --image-size to resize every image)")
    rng = np.random.default_rng(SPLIT_SEED)
    order_train, order_test = rng.permutation(len(x_train)), rng.permutation(len(x_test))
    ds = _checked(root.name, x_train[order_train], y_train[order_train], x_test[order_test], y_test[order_test], str(root))
    return replace(ds, classes=tuple(classes))


def fashion_mnist_32x32x3() -> Dataset:
    """Fashion-MNIST resized to 32×32 (Pillow's bilinear filter) and repeated to 3 channels: colour-shaped
    images of the size MobileNet-style nets expect, from the Debian files, the same bytes on every run."""
    _check_fashion_mnist()
    return _handed_out(_fashion_mnist_32x32x3_once(FASHION_MNIST_DIR))


def _fashion_mnist() -> Dataset:
    _check_fashion_mnist()
    return _handed_out(_fashion_mnist_once(FASHION_MNIST_DIR))


def _check_fashion_mnist() -> None:
    if not FASHION_MNIST_DIR.is_dir():
        raise DatasetError(
            str(FASHION_MNIST_DIR),
            "Fashion-MNIST is not installed (run ./setup.sh, or `apt-get install dataset-fashion-mnist`, or pass --dataset PATH)",
        )


# A Ray worker or test process runs many cells on the same installed files: decode (and resize) once.
@functools.cache
def _fashion_mnist_once(folder: Path) -> Dataset:
    return load_idx_folder(folder, name=DEFAULT_DATASET)


@functools.cache
def _fashion_mnist_32x32x3_once(folder: Path) -> Dataset:
    base = _fashion_mnist_once(folder)
    rgb = lambda x: np.repeat(images.resize_array(x, (32, 32))[..., None], 3, axis=-1)  # noqa: E731
    return Dataset(FASHION_MNIST_32X32X3, rgb(base.x_train), base.y_train, rgb(base.x_test), base.y_test)


def _handed_out(ds: Dataset) -> Dataset:
    """A cached data set for one caller: the images shared read-only (a write raises instead of changing
    what later cells get; copying 32×32×3 images costs 0.6 s), the labels copied (torch shares them)."""
    for x in (ds.x_train, ds.x_test):
        x.setflags(write=False)
    return replace(ds, y_train=ds.y_train.copy(), y_test=ds.y_test.copy())


def resized(ds: Dataset, image_size: str | int | tuple[int, int] | None) -> Dataset:
    """Both splits resized to `image_size` (H, W) with Pillow's bilinear filter; channels and dtype kept."""
    size = parse_image_size(image_size)
    if size is None or tuple(ds.x_train.shape[1:3]) == size:
        return ds
    return replace(ds, x_train=images.resize_array(ds.x_train, size), x_test=images.resize_array(ds.x_test, size))


def load_dataset(spec: str | None = None, test_split: float | None = None,
                 image_size: str | int | tuple[int, int] | None = None) -> Dataset:
    """`fashion-mnist` (Debian package), `fashion-mnist-32x32x3`, a folder of IDX files, an .npz, or an
    image folder (class sub-folders); `image_size` resizes any of them, `test_split` splits an image folder."""
    spec = spec or DEFAULT_DATASET
    check_test_split(test_split)
    parse_image_size(image_size)
    path = Path(spec)
    if spec == DEFAULT_DATASET:
        ds = _fashion_mnist()
    elif spec == FASHION_MNIST_32X32X3:
        ds = fashion_mnist_32x32x3()
    elif path.is_dir() and not _is_idx_folder(path):
        return load_image_folder(path, test_split, image_size)
    elif path.is_dir():
        ds = load_idx_folder(path)
    elif path.suffix == ".npz":
        ds = load_npz(path)
    elif not path.exists():
        raise DatasetError(spec, "no such file or folder (give fashion-mnist, fashion-mnist-32x32x3, a folder of IDX files, "
                                 "an image folder or an .npz)")
    else:
        raise DatasetError(spec, "unsupported data set format (give a folder of IDX files, an image folder or an .npz)")
    if test_split is not None:
        raise DatasetError(spec, "already split into train and test; --test-split applies to a single folder of class folders")
    return resized(ds, image_size)


def write_npz(ds: Dataset, path: str | Path) -> Path:
    """The data set as an .npz that `load_dataset` reads back (x_train, y_train, x_test, y_test)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, x_train=ds.x_train, y_train=ds.y_train, x_test=ds.x_test, y_test=ds.y_test)
    return path


def write_image_folder(ds: Dataset, root: str | Path, split: bool = True, suffix: str = ".png") -> Path:
    """uint8 images as class folders: root/train/<class>/ and root/test/<class>/ (`split`), or train and
    test pooled into root/<class>/. Class folders are the data set's class names, else zero-padded labels
    (so sorted names keep label order). For tests and for trying the image-folder path on any data set."""
    root = Path(root)
    n = ds.num_classes
    classes = list(ds.classes) if len(ds.classes) == n else [f"{i:0{len(str(n - 1))}d}" for i in range(n)]
    if split:
        images.write_class_folders(ds.x_train, ds.y_train, root / "train", classes, suffix)
        images.write_class_folders(ds.x_test, ds.y_test, root / "test", classes, suffix)
    else:
        images.write_class_folders(np.concatenate([ds.x_train, ds.x_test]), np.concatenate([ds.y_train, ds.y_test]),
                                   root, classes, suffix)
    return root
