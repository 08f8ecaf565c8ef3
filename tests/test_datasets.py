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
        (lambda d: (d / "train-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(np.zeros((12, 4, 4), np.uint8))[:-5])),
         "truncated"),
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


# --- channels-last arrays of any H×W×C, image folders, resizing, the derived 32×32×3 set -------------

import logging  # noqa: E402

from PIL import Image  # noqa: E402

from condition import datasets  # noqa: E402
from condition.datasets import (  # noqa: E402
    Dataset, data_options, dataset_key, load_image_folder, parse_image_size, write_image_folder, write_npz,
)
from condition.errors import ConfigError  # noqa: E402
from condition.images import resize_array  # noqa: E402


def _coded(n_per_class: int, classes: int, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Images whose every pixel is a code unique to the image (10·label + index), so a loaded image
    says which file it came from whatever order the loader shuffled them into."""
    y = np.repeat(np.arange(classes), n_per_class)
    codes = 10 * y + np.tile(np.arange(n_per_class), classes)
    return np.broadcast_to(codes.astype(np.uint8).reshape(-1, *[1] * len(shape)), (len(y), *shape)).copy(), y


def _tiny(shape=(6, 5, 3), n_train=4, n_test=2, classes=3, classes_names=()) -> Dataset:
    x_train, y_train = _coded(n_train, classes, shape)
    x_test, y_test = _coded(n_test, classes, shape)
    return Dataset("tiny", x_train, y_train, x_test + 5, y_test, classes_names)


def _same_images(loaded_x, loaded_y, x, y) -> None:
    """The loaded set holds exactly the written (image, label) pairs, in any order."""
    got = sorted((int(a.reshape(-1)[0]), int(b)) for a, b in zip(loaded_x, loaded_y))
    want = sorted((int(a.reshape(-1)[0]), int(b)) for a, b in zip(x, y))
    assert got == want


def test_image_folder_train_test_layout(tmp_path) -> None:
    ds = _tiny(classes_names=("cat", "dog", "emu"))
    root = write_image_folder(ds, tmp_path / "pets")
    (root / "train" / "cat" / "README.txt").write_text("not an image, ignored")
    loaded = datasets.load_dataset(str(root))
    assert loaded.name == "pets" and loaded.classes == ("cat", "dog", "emu")
    assert loaded.x_train.shape == (12, 6, 5, 3) and loaded.x_test.shape == (6, 6, 5, 3) and loaded.x_train.dtype == np.uint8
    _same_images(loaded.x_train, loaded.y_train, ds.x_train, ds.y_train)
    _same_images(loaded.x_test, loaded.y_test, ds.x_test, ds.y_test)
    assert len(set(loaded.y_train[:3])) > 1, "shuffled, so --train-limit's first N images are not all one class"
    (root / "test").rename(root / "val")  # Keras users' val/ is the test split too
    assert datasets.load_dataset(str(root)).x_test.shape == (6, 6, 5, 3)


def test_image_folder_split_layout_is_stratified_and_deterministic(tmp_path) -> None:
    ds = _tiny(shape=(4, 4, 1), n_train=8, n_test=0)
    root = write_image_folder(ds, tmp_path / "flat", split=False)
    a = load_image_folder(root, test_split=0.25)
    assert a.x_train.shape == (18, 4, 4, 1) and a.x_test.shape == (6, 4, 4, 1)  # grey kept as one channel
    assert np.bincount(a.y_test).tolist() == [2, 2, 2]  # a quarter of each class
    b = datasets.load_dataset(str(root), test_split=0.25)
    np.testing.assert_array_equal(a.x_test, b.x_test)
    np.testing.assert_array_equal(a.y_train, b.y_train)
    _same_images(np.concatenate([a.x_train, a.x_test]), np.concatenate([a.y_train, a.y_test]), ds.x_train, ds.y_train)
    assert len(datasets.load_dataset(str(root)).x_test) == 6  # default --test-split 0.2: round(8 × 0.2) = 2 a class


def test_image_folder_resizing_and_mixed_sizes(tmp_path) -> None:
    root = tmp_path / "sizes"
    for cls, size in (("a", (8, 8)), ("b", (10, 6))):
        (root / cls).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", size, (40 * i, 10, 200)).save(root / cls / f"{i}.png")
    with pytest.raises(DatasetError, match=r"b[/\\]0\.png: is 6×10 but 0\.png is 8×8 \(give --image-size"):
        datasets.load_dataset(str(root))
    ds = datasets.load_dataset(str(root), image_size="7x9")
    assert ds.input_shape == (7, 9, 3)


def test_image_folder_jpeg_and_mixed_modes(tmp_path, caplog) -> None:
    root = tmp_path / "mixed"
    for cls in ("a", "b"):
        (root / cls).mkdir(parents=True)
        Image.new("RGB", (5, 5), (255, 0, 0)).save(root / cls / "colour.jpg", quality=95)
        for i in range(2):
            Image.new("L", (5, 5), 100).save(root / cls / f"grey{i}.png")
    with caplog.at_level(logging.WARNING):
        ds = datasets.load_dataset(str(root), test_split=0.34)
    assert ds.input_shape == (5, 5, 1)
    assert "4 grey and 2 colour images; all converted to grey (the majority)" in caplog.text
    Image.new("RGBA", (5, 5), (0, 0, 255, 128)).save(root / "a" / "alpha.png")
    Image.new("RGB", (5, 5), (0, 255, 0)).save(root / "b" / "colour2.jpeg")
    assert datasets.load_dataset(str(root), test_split=0.34).input_shape == (5, 5, 3)  # 4 grey, 4 colour: a tie goes to RGB


def _class(root, name, n=2, size=(4, 4)):
    (root / name).mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new("L", size, 10 * i).save(root / name / f"{i}.png")


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda r: (_class(r, "a"), (r / "b").mkdir()), r"b: class folder has no images"),
        (lambda r: (_class(r, "a"), _class(r, "b"), (r / "b" / "1.png").write_bytes(b"\x89PNG not really")),
         r"b[/\\]1\.png: unreadable image"),
        (lambda r: _class(r, "only"), r"only one class folder \(only\)"),
        (lambda r: (_class(r / "train", "a"), _class(r / "train", "b"), _class(r / "test", "a"), _class(r / "test", "c")),
         r"train/ and test/ have different classes: b only in train/; c only in test/"),
        (lambda r: ((r / "a").mkdir(), (r / "b").mkdir(), (r / "a" / "notes.txt").write_text("x")), "no images in its 2 class folder"),
        (lambda r: (r / "loose.png").write_bytes(b""), "no class folders"),
        (lambda r: (_class(r / "train", "a"), _class(r / "train", "b"), (r / "test" / "a").mkdir(parents=True), _class(r / "test", "b")),
         r"test[/\\]a: class folder has no images"),
    ],
    ids=["empty-class", "unreadable", "single-class", "train-test-classes", "no-images", "no-class-folders", "empty-test-class"],
)
def test_bad_image_folders(tmp_path, build, message) -> None:
    root = tmp_path / "bad"
    root.mkdir()
    build(root)
    with pytest.raises(DatasetError, match=message) as err:
        datasets.load_dataset(str(root))
    assert "\n" not in str(err.value)


def test_test_split_only_for_unsplit_folders(tmp_path) -> None:
    root = write_image_folder(_tiny(), tmp_path / "split")
    with pytest.raises(DatasetError, match="already split into train/ and test/"):
        datasets.load_dataset(str(root), test_split=0.2)
    path = write_npz(_tiny(), tmp_path / "t.npz")
    with pytest.raises(DatasetError, match="already split"):
        datasets.load_dataset(str(path), test_split=0.2)
    with pytest.raises(ConfigError, match="--test-split=1.5"):
        datasets.load_dataset(str(path), test_split=1.5)


def test_npz_any_hwc_uint8_and_float_resized(tmp_path) -> None:
    ds = _tiny(shape=(32, 32, 3))
    back = datasets.load_dataset(str(write_npz(ds, tmp_path / "c.npz")))
    assert back.input_shape == (32, 32, 3) and back.x_train.dtype == np.uint8
    np.testing.assert_array_equal(back.x_test, ds.x_test)
    rng = np.random.default_rng(2)
    np.savez(tmp_path / "f.npz", x_train=rng.random((6, 32, 32, 3), dtype=np.float32), y_train=np.arange(6) % 3,
             x_test=rng.random((3, 32, 32, 3), dtype=np.float32), y_test=np.arange(3))
    small = datasets.load_dataset(str(tmp_path / "f.npz"), image_size=16)
    assert small.input_shape == (16, 16, 3) and small.x_train.dtype == np.float32
    assert 0.0 <= small.normalised("train").min() and small.normalised("train").max() <= 1.0
    np.savez(tmp_path / "i.npz", x_train=ds.x_train.astype(np.int64), y_train=ds.y_train,
             x_test=ds.x_test.astype(np.int64), y_test=ds.y_test)
    assert datasets.load_dataset(str(tmp_path / "i.npz")).x_train.dtype == np.uint8  # pixel values, scaled like uint8


@pytest.mark.parametrize(
    "change, message",
    [
        ({"x_train": np.zeros((6, 3, 8, 8), np.uint8), "x_test": np.zeros((2, 3, 8, 8), np.uint8)}, "looks channels-first"),
        ({"y_train": np.eye(3)[np.arange(6) % 3]}, "one-hot"),
        ({"y_test": np.array([0.5, 1.0])}, "not whole numbers"),
        ({"y_test": np.array([-1, 0])}, "start at 0"),
        ({"x_test": np.full((2, 8, 8, 3), 300, np.int32)}, "integer images must be pixel values"),
        ({"x_test": np.full((2, 8, 8, 3), np.nan, np.float32)}, "NaN"),
    ],
)
def test_bad_arrays(tmp_path, change, message) -> None:
    arrays = {"x_train": np.zeros((6, 8, 8, 3), np.uint8), "y_train": np.arange(6) % 3,
              "x_test": np.zeros((2, 8, 8, 3), np.uint8), "y_test": np.arange(2)}
    np.savez(tmp_path / "bad.npz", **{**arrays, **change})
    with pytest.raises(DatasetError, match=message):
        datasets.load_dataset(str(tmp_path / "bad.npz"))


def test_idx4_colour_images(tmp_path) -> None:
    ds = _tiny(shape=(6, 6, 3))
    folder = tmp_path / "idx"
    folder.mkdir()
    for key, stem in IDX_FILES.items():
        arr = getattr(ds, key).astype(np.uint8)
        (folder / stem.replace("idx3", "idx4" if arr.ndim == 4 else "idx3")).write_bytes(_idx_bytes(arr))
    assert datasets.load_dataset(str(folder)).input_shape == (6, 6, 3)


def test_resize_matches_pillow_bilinear() -> None:
    x = np.random.default_rng(3).integers(0, 256, (4, 28, 28), dtype=np.uint8)
    for size in ((32, 32), (14, 20)):
        ours = resize_array(x, size)
        pil = np.stack([np.asarray(Image.fromarray(i).resize(size[::-1], Image.BILINEAR)) for i in x])
        assert ours.shape == (4, *size) and np.abs(ours.astype(int) - pil).max() <= 1


def test_fashion_mnist_32x32x3(tmp_path, monkeypatch) -> None:
    """Made from whatever the Fashion-MNIST folder holds: a tiny stand-in here, so the test takes milliseconds."""
    arrays = _write_idx_folder(tmp_path / "fm", gz=True)
    rng = np.random.default_rng(4)
    for key, n in (("x_train", 12), ("x_test", 5)):
        arrays[key] = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        (tmp_path / "fm" / (IDX_FILES[key] + ".gz")).write_bytes(gzip.compress(_idx_bytes(arrays[key])))
    monkeypatch.setattr(datasets, "FASHION_MNIST_DIR", tmp_path / "fm")
    ds = datasets.load_dataset("fashion-mnist-32x32x3")
    assert ds.name == "fashion-mnist-32x32x3" and ds.input_shape == (32, 32, 3) and ds.x_test.shape == (5, 32, 32, 3)
    assert ds.x_train.dtype == np.uint8 and (ds.x_train[..., 0] == ds.x_train[..., 2]).all()
    np.testing.assert_array_equal(ds.x_train[..., 1], resize_array(arrays["x_train"], (32, 32)))
    np.testing.assert_array_equal(ds.x_train, datasets.load_dataset("fashion-mnist-32x32x3").x_train)  # deterministic
    assert datasets.load_dataset("fashion-mnist", image_size=32).input_shape == (32, 32)


def test_image_size_and_identity_options() -> None:
    assert parse_image_size("32") == (32, 32) and parse_image_size("32x48") == (32, 48) and parse_image_size([8, 9]) == (8, 9)
    for bad in ("0", "32x", "axb", "1x2x3", True, 5000):
        with pytest.raises(ConfigError, match="--image-size"):
            parse_image_size(bad)
    assert data_options() == {} and dataset_key("x.npz") == "x.npz"  # unset: hashes as before
    assert data_options(0.2, "32") == {"test_split": 0.2, "image_size": [32, 32]}
    assert dataset_key("flowers", 0.2, "32x48") == "flowers[image_size=32x48,test_split=0.2]"


def test_data_options_in_run_identity_recipe_and_cli(tmp_path, capsys) -> None:
    from condition.cli import main
    from condition.compare.recipe import parse_recipe
    from condition.errors import RecipeError
    from condition.run import RunConfig
    from condition.techniques import PostTrainingQuantConfig

    base = RunConfig("tf", (PostTrainingQuantConfig(),), out=tmp_path)
    assert "test_split" not in base.identity() and "image_size" not in base.identity()  # old hashes unchanged
    sized = RunConfig("tf", (PostTrainingQuantConfig(),), out=tmp_path, image_size=(32, 32))
    split = RunConfig("tf", (PostTrainingQuantConfig(),), out=tmp_path, test_split=0.3)
    assert len({base.hash, sized.hash, split.hash}) == 3

    recipe = parse_recipe({"chains": [{"steps": ["post-training-quant"]}], "test_split": 0.25, "image_size": "24x32"}, "r.toml")
    assert (recipe.test_split, recipe.image_size) == (0.25, (24, 32))
    for key, bad, message in (("test_split", 1.0, "must be a fraction between 0 and 1"), ("test_split", "x", "must be a number"),
                              ("image_size", "big", "not an image size")):
        with pytest.raises(RecipeError, match=f"r.toml: {key}: {message}"):
            parse_recipe({"chains": [{"steps": ["post-training-quant"]}], key: bad}, "r.toml")

    assert main(["tf", "post-training-quant", "--image-size", "3x", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "condition: error: --image-size='3x': not an image size (give N for N×N, or HxW such as 32x48)"
    assert not any(tmp_path.iterdir())


def test_image_folder_identity_follows_its_files(tmp_path) -> None:
    from condition.datasets import dataset_identity

    root = write_image_folder(_tiny(), tmp_path / "pets", split=False)
    before = dataset_identity(str(root))
    Image.new("RGB", (5, 6)).save(root / "1" / "new.png")  # inside a class folder: the root's mtime does not move
    assert dataset_identity(str(root)) != before
    assert dataset_identity("fashion-mnist") == "fashion-mnist"
    assert dataset_identity("fashion-mnist", image_size=32) == {"name": "fashion-mnist", "image_size": [32, 32]}


def test_test_labels_training_never_sees_stop_with_one_line_naming_them(tmp_path, capsys) -> None:
    """Test classes 0-14, train classes 0-9: the model could never predict 10-14. Before, it trained and
    was flagged "near chance" with no cause given; now the data set is refused, naming the file."""
    from condition.cli import main
    from condition.errors import UnseenLabelsError

    rng = np.random.default_rng(3)
    path = tmp_path / "fifteen.npz"
    np.savez(path, x_train=rng.integers(0, 256, (40, 8, 8), dtype=np.uint8), y_train=np.arange(40) % 10,
             x_test=rng.integers(0, 256, (30, 8, 8), dtype=np.uint8), y_test=np.arange(30) % 15)
    with pytest.raises(UnseenLabelsError) as err:
        datasets.load_dataset(str(path))
    assert err.value.labels == (10, 11, 12, 13, 14)
    assert str(err.value) == (f"data set {path}: test labels 10-14 never occur in training (train labels 0-9); "
                              "give a training split that holds every class")
    assert main(["tf", "post-training-quant", "--dataset", str(path), "--out", str(tmp_path / "runs")]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1] == f"condition: error: {err.value}" and "Traceback" not in "".join(lines)
    assert not list((tmp_path / "runs").rglob("model_int8.tflite"))
