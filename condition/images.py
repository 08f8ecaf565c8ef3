"""Image folders as users have them, and resizing of image arrays.

The layout is the one Keras' `image_dataset_from_directory` and torchvision's `ImageFolder` read:
one sub-folder per class, named by the class, labels in sorted folder-name order. Either a root
holding `train/` and `test/` (or `val/`) class folders, or one root of class folders that
`split_stratified` divides. Pillow is imported inside the functions, so `condition --help` stays fast.

    x, y, classes = read_class_folders(Path("flowers/train"), size=(32, 32), mode="RGB")
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from condition.errors import DatasetError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
GREY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")  # everything else is read as colour
TEST_FOLDERS = ("test", "val")  # the first present is the test split


def class_folders(root: Path) -> list[Path]:
    """Sub-folders of `root` in sorted name order (hidden ones skipped), as both frameworks do."""
    return sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")), key=lambda p: p.name)


def image_files(folder: Path) -> list[Path]:
    """Image files anywhere below one class folder, sorted; other files (README, .DS_Store) are ignored."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                  and not p.name.startswith("."))


def split_layout(root: Path) -> tuple[Path, Path] | None:
    """(train, test) folders when `root` is already split, else None."""
    train = root / "train"
    if not train.is_dir():
        return None
    for name in TEST_FOLDERS:
        if (root / name).is_dir():
            return train, root / name
    return None


def scan(root: Path) -> dict[str, list[Path]]:
    """{class name: image files}; an empty class, a single class or no classes is a DatasetError."""
    classes = class_folders(root)
    if not classes:
        raise DatasetError(str(root), "no class folders (expected one sub-folder of images per class, "
                                      "or train/ and test/ folders of class folders)")
    files = {c.name: image_files(c) for c in classes}
    if not any(files.values()):
        raise DatasetError(str(root), f"no images in its {len(classes)} class folder(s) (looked for {', '.join(IMAGE_SUFFIXES)})")
    for c in classes:
        if not files[c.name]:
            raise DatasetError(str(c), "class folder has no images (remove it or add images)")
    if len(files) == 1:
        raise DatasetError(str(root), f"only one class folder ({classes[0].name}); a classifier needs at least two")
    return files


def _open(path: Path):
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            return im.copy()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        problem = str(exc).split(" '")[0] if str(exc) else type(exc).__name__
        raise DatasetError(str(path), f"unreadable image ({problem})") from None


def colour_mode(modes: list[str], where: str) -> str:
    """'L' or 'RGB': the images' own mode, or the majority when mixed (a tie goes to RGB), said in a warning."""
    grey = sum(m in GREY_MODES for m in modes)
    colour = len(modes) - grey
    mode = "L" if grey > colour else "RGB"
    if grey and colour:
        log.warning("%s: %d grey and %d colour images; all converted to %s (the majority%s)", where, grey, colour,
                    "grey" if mode == "L" else "RGB", "" if grey != colour else ", RGB on a tie")
    return mode


def _to_mode(im, mode: str):
    if im.mode == mode:
        return im
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "F"):  # 16-bit / float grey: scale to 8 bits, not clip
        a = np.asarray(im, dtype=np.float64)
        hi = 65535.0 if a.max() > 255 else 255.0
        from PIL import Image

        im = Image.fromarray(np.clip(a / hi * 255.0 + 0.5, 0, 255).astype(np.uint8))
    if im.mode in ("RGBA", "LA", "P", "PA"):
        im = im.convert("RGBA").convert("RGB") if mode == "RGB" else im.convert("L")
    return im.convert(mode)


def read_images(files: list[Path], size: tuple[int, int] | None, mode: str) -> np.ndarray:
    """(N, H, W, C) uint8; every image resized to `size` (H, W), or all of one size when `size` is None."""
    from PIL import Image

    out: list[np.ndarray] = []
    first: tuple[Path, tuple[int, int]] | None = None
    for path in files:
        im = _to_mode(_open(path), mode)
        if size is not None:
            if (im.height, im.width) != size:
                im = im.resize((size[1], size[0]), Image.BILINEAR)
        elif first is None:
            first = (path, (im.height, im.width))
        elif (im.height, im.width) != first[1]:
            raise DatasetError(str(path), f"is {im.height}×{im.width} but {first[0].name} is {first[1][0]}×{first[1][1]} "
                                          "(give --image-size to resize every image)")
        a = np.asarray(im, dtype=np.uint8)
        out.append(a[..., None] if a.ndim == 2 else a)
    return np.stack(out)


def image_modes(files: list[Path]) -> list[str]:
    """Each file's mode, read from its header only (fast)."""
    return [_header_mode(p) for p in files]


def _header_mode(path: Path) -> str:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.mode
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        problem = str(exc).split(" '")[0] if str(exc) else type(exc).__name__
        raise DatasetError(str(path), f"unreadable image ({problem})") from None


def labelled(files: dict[str, list[Path]], classes: list[str]) -> tuple[list[Path], np.ndarray]:
    """Flat file list and int64 labels (the class's index in `classes`)."""
    paths = [p for c in classes for p in files[c]]
    labels = np.concatenate([np.full(len(files[c]), i, dtype=np.int64) for i, c in enumerate(classes)])
    return paths, labels


def split_stratified(labels: np.ndarray, test_split: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices: `test_split` of every class goes to test (rounded; at least one image on
    each side when the class has two), chosen by a seeded permutation: the same split on every machine."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        n_test = min(max(int(round(len(idx) * test_split)), 1), len(idx) - 1)
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def resize_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of Pillow's BILINEAR resampling (a triangle filter widened by the scale
    when shrinking, so it averages instead of aliasing), for resizing whole arrays with two matmuls."""
    scale = n_in / n_out
    support = max(scale, 1.0)
    centres = (np.arange(n_out) + 0.5) * scale
    w = np.maximum(0.0, 1.0 - np.abs((np.arange(n_in) + 0.5)[None, :] - centres[:, None]) / support)
    return w / w.sum(axis=1, keepdims=True)


def resize_array(x: np.ndarray, size: tuple[int, int], chunk: int = 4096) -> np.ndarray:
    """Images (N, H, W) or (N, H, W, C) resized to `size` (H, W), same layout and dtype (uint8 rounded)."""
    h, w = x.shape[1], x.shape[2]
    if (h, w) == tuple(size):
        return x
    rows = resize_matrix(h, size[0]).astype(np.float32)
    cols = resize_matrix(w, size[1]).astype(np.float32)
    out = np.empty((len(x), *size, *x.shape[3:]), dtype=x.dtype)
    for start in range(0, len(x), chunk):
        part = x[start:start + chunk].astype(np.float32)
        n, rest = len(part), part.shape[3:]
        # two large matrix products (one BLAS call each) instead of a small one per image
        part = (rows @ np.moveaxis(part, 1, 0).reshape(h, -1)).reshape(size[0], n, w, *rest)
        part = (cols @ np.moveaxis(part, 2, 0).reshape(w, -1)).reshape(size[1], size[0], n, *rest)
        part = np.moveaxis(part, (0, 1, 2), (2, 1, 0))
        if x.dtype == np.uint8:
            part = np.clip(np.rint(part), 0, 255)
        out[start:start + chunk] = part.astype(x.dtype)
    return out


def write_class_folders(x: np.ndarray, y: np.ndarray, root: Path, classes: list[str], suffix: str = ".png") -> None:
    """uint8 images (N, H, W[, 1|3]) as root/<class>/<index>.png (one folder per class, even empty ones)."""
    from PIL import Image

    if x.dtype != np.uint8:
        raise DatasetError(str(root), f"images are {x.dtype}; only uint8 images can be written as {suffix} files")
    for name in classes:
        (root / name).mkdir(parents=True, exist_ok=True)
    width = len(str(max(len(x) - 1, 0)))
    for i, (img, label) in enumerate(zip(x, y)):
        img = img[..., 0] if img.ndim == 3 and img.shape[-1] == 1 else img
        Image.fromarray(img).save(root / classes[int(label)] / f"{i:0{width}d}{suffix}")
