"""Dataset loaders read the real on-disk formats exactly and fail with errors that say what to do."""

import gzip
import os
import pickle
import re
import struct
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from zigprune import data
from zigprune.data import Augment, fashion_mnist
from zigprune.data.cifar10 import MEAN as CIFAR_MEAN
from zigprune.data.cifar10 import STD as CIFAR_STD
from zigprune.errors import DataError, ZigpruneError

# ---------------------------------------------------------------- Fashion-MNIST (idx files)


def write_idx(path: Path, array: np.ndarray, compress: bool = True, magic: int | None = None) -> None:
    """Write ``array`` (uint8) in the idx format, as the Fashion-MNIST files are made."""
    magic = magic if magic is not None else 0x0800 + array.ndim
    raw = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()
    path.write_bytes(gzip.compress(raw) if compress else raw)


def make_fashion(folder: Path, n_train: int = 5, n_test: int = 3, compress_test: bool = True) -> dict:
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for stem, array in arrays.items():
        compress = compress_test or not stem.startswith("t10k")
        write_idx(folder / (f"{stem}.gz" if compress else stem), array, compress)
    return arrays


def raw_pixels(images: torch.Tensor, mean: float, std: float) -> np.ndarray:
    """Undo the standardisation back to the uint8 pixels the files hold."""
    return torch.round((images * std + mean) * 255).to(torch.uint8).numpy()


@pytest.mark.parametrize("compress_test", [True, False])
def test_fashion_mnist_reads_exact_pixels_and_labels(tmp_path: Path, compress_test: bool) -> None:
    arrays = make_fashion(tmp_path, compress_test=compress_test)
    ds = data.load("fashion-mnist", tmp_path)
    images, labels = ds.train.tensors
    assert images.dtype == torch.float32 and images.shape == (5, 1, 28, 28)
    assert labels.dtype == torch.int64
    mean, std = fashion_mnist.MEAN, fashion_mnist.STD
    np.testing.assert_array_equal(raw_pixels(images[:, 0], mean, std), arrays["train-images-idx3-ubyte"])
    np.testing.assert_array_equal(labels.numpy(), arrays["train-labels-idx1-ubyte"])
    test_images, test_labels = ds.test.tensors
    np.testing.assert_array_equal(raw_pixels(test_images[:, 0], mean, std), arrays["t10k-images-idx3-ubyte"])
    np.testing.assert_array_equal(test_labels.numpy(), arrays["t10k-labels-idx1-ubyte"])
    assert (ds.name, ds.num_classes, ds.input_shape) == ("fashion-mnist", 10, (1, 28, 28))
    assert ds.classes[0] == "T-shirt/top" and ds.classes[9] == "Ankle boot"
    assert ds.augment == Augment(padding=0, flip=True)


def test_fashion_mnist_wrong_magic_number(tmp_path: Path) -> None:
    make_fashion(tmp_path)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((2, 28, 28), np.uint8), magic=0x0000_0903)
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte\.gz has magic number 0x00000903"):
        data.load("fashion-mnist", tmp_path)


def test_fashion_mnist_truncated_and_mismatched_files(tmp_path: Path) -> None:
    make_fashion(tmp_path)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-7]))
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz is truncated or padded"):
        data.load("fashion-mnist", tmp_path)
    make_fashion(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(4, np.uint8))
    with pytest.raises(DataError, match="disagree: 5 images, 4 labels"):
        data.load("fashion-mnist", tmp_path)
    make_fashion(tmp_path)
    (tmp_path / "train-labels-idx1-ubyte.gz").write_bytes(b"\x1f\x8bnot really gzip")
    with pytest.raises(DataError, match="not a readable gzip file"):
        data.load("fashion-mnist", tmp_path)


def test_fashion_mnist_missing_directory_says_how_to_get_it(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError) as info:
        data.load("fashion-mnist", missing)
    message = str(info.value)
    assert str(missing) in message and "apt-get install dataset-fashion-mnist" in message
    assert "--data-dir" in message and "\n" not in message


def test_ci_installs_the_real_fashion_mnist() -> None:
    """CI must run the real-format test below: .ci/run installs the Debian package, so it is never skipped."""
    if os.environ.get("CI"):
        assert fashion_mnist.DEFAULT_DIR.is_dir(), "CI did not install dataset-fashion-mnist (see .ci/run)"
    assert "dataset-fashion-mnist" in (Path(__file__).parents[1] / ".ci" / "run").read_text()


@pytest.mark.skipif(not fashion_mnist.DEFAULT_DIR.is_dir(), reason="dataset-fashion-mnist not installed")
def test_fashion_mnist_real_files_from_the_debian_package() -> None:
    ds = data.load("fashion-mnist")
    assert (len(ds.train), len(ds.test)) == (60000, 10000)
    images, labels = ds.test.tensors
    assert images.shape == (10000, 1, 28, 28) and labels[:5].tolist() == [9, 2, 1, 1, 6]
    assert abs(images.mean().item()) < 0.05 and abs(images.std().item() - 1) < 0.05


# ---------------------------------------------------------------- CIFAR-10 (restricted unpickling)


def cifar_batch(n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {
        b"batch_label": b"training batch",
        b"labels": [int(v) for v in rng.integers(0, 10, n)],
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"filenames": [f"img_{i}.png".encode() for i in range(n)],
    }


LABEL_NAMES = [
    b"airplane",
    b"automobile",
    b"bird",
    b"cat",
    b"deer",
    b"dog",
    b"frog",
    b"horse",
    b"ship",
    b"truck",
]


def make_cifar(folder: Path, protocol: int = 2, legacy_numpy: bool = False) -> dict[str, dict]:
    """Write the CIFAR-10 python-version files; ``legacy_numpy`` names numpy 1's module as old files do."""
    folder.mkdir(parents=True, exist_ok=True)
    batches = {f"data_batch_{i}": cifar_batch(2, i) for i in range(1, 6)}
    batches["test_batch"] = cifar_batch(3, 9)
    meta = {b"num_cases_per_batch": 2, b"label_names": LABEL_NAMES, b"num_vis": 3072}
    for name, content in [*batches.items(), ("batches.meta", meta)]:
        raw = pickle.dumps(content, protocol=protocol)
        if legacy_numpy:
            raw = raw.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
        (folder / name).write_bytes(raw)
    return batches


def assert_cifar_matches(ds: data.Dataset, batches: dict[str, dict]) -> None:
    images, labels = ds.train.tensors
    expected = np.concatenate([batches[f"data_batch_{i}"][b"data"] for i in range(1, 6)])
    mean, std = torch.tensor(CIFAR_MEAN).reshape(3, 1, 1), torch.tensor(CIFAR_STD).reshape(3, 1, 1)
    pixels = torch.round((images * std + mean) * 255).to(torch.uint8).reshape(10, 3072).numpy()
    np.testing.assert_array_equal(pixels, expected)
    assert labels.tolist() == [v for i in range(1, 6) for v in batches[f"data_batch_{i}"][b"labels"]]
    assert ds.test.tensors[1].tolist() == batches["test_batch"][b"labels"]
    assert images.shape == (10, 3, 32, 32) and ds.input_shape == (3, 32, 32)
    assert ds.classes == [n.decode() for n in LABEL_NAMES] and ds.num_classes == 10
    assert ds.augment == Augment(padding=4, flip=True)


@pytest.mark.parametrize(("protocol", "legacy"), [(2, True), (2, False), (pickle.HIGHEST_PROTOCOL, False)])
def test_cifar10_reads_batches(tmp_path: Path, protocol: int, legacy: bool) -> None:
    batches = make_cifar(tmp_path / "cifar-10-batches-py", protocol, legacy)
    assert_cifar_matches(data.load("cifar10", tmp_path), batches)
    assert_cifar_matches(data.load("cifar10", tmp_path / "cifar-10-batches-py"), batches)


def test_cifar10_reads_the_archive_without_extracting(tmp_path: Path) -> None:
    batches = make_cifar(tmp_path / "build" / "cifar-10-batches-py")
    archive = tmp_path / "dl" / "cifar-10-python.tar.gz"
    archive.parent.mkdir()
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "build" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    assert_cifar_matches(data.load("cifar10", archive.parent), batches)
    assert sorted(p.name for p in archive.parent.iterdir()) == ["cifar-10-python.tar.gz"]


def py2_str(raw: bytes) -> bytes:
    """A Python 2 ``str`` in pickle opcodes (SHORT_BINSTRING or BINSTRING), as cPickle wrote them."""
    return b"U" + bytes([len(raw)]) + raw if len(raw) < 256 else b"T" + struct.pack("<i", len(raw)) + raw


def py2_batch(images: np.ndarray, labels: list[int]) -> bytes:
    """A batch pickled the way the real CIFAR-10 files were: Python 2 cPickle, protocol 2, numpy 1."""
    dtype = b"cnumpy\ndtype\n" + py2_str(b"u1") + b"K\x00K\x01\x87R(K\x03" + py2_str(b"|")
    dtype += b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb"
    shape = b"(" + b"".join(b"J" + struct.pack("<i", d) for d in images.shape) + b"t"
    array = b"cnumpy.core.multiarray\n_reconstruct\ncnumpy\nndarray\nK\x00\x85" + py2_str(b"b") + b"\x87R"
    array += b"(K\x01" + shape + dtype + b"\x89" + py2_str(images.tobytes()) + b"tb"
    label_list = b"](" + b"".join(b"K" + bytes([v]) for v in labels) + b"e"
    return b"\x80\x02}(" + py2_str(b"data") + array + py2_str(b"labels") + label_list + b"u."


def test_cifar10_reads_python2_pickles(tmp_path: Path) -> None:
    batches = make_cifar(tmp_path)
    for name, batch in batches.items():
        (tmp_path / name).write_bytes(py2_batch(batch[b"data"], batch[b"labels"]))
    assert_cifar_matches(data.load("cifar10", tmp_path), batches)


class Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (os.system, (f"touch {self.marker}",))


def test_cifar10_malicious_pickle_never_runs(tmp_path: Path) -> None:
    make_cifar(tmp_path)
    marker = tmp_path / "pwned"
    batch = cifar_batch(2, 1)
    batch[b"labels"] = Evil(marker)
    (tmp_path / "data_batch_3").write_bytes(pickle.dumps(batch, protocol=2))
    with pytest.raises(
        DataError, match=r"data_batch_3 asks to load (posix|os)\.system.*refusing to unpickle"
    ):
        data.load("cifar10", tmp_path)
    assert not marker.exists()
    (tmp_path / "data_batch_3").write_bytes(pickle.dumps(Evil(marker)))
    with pytest.raises(DataError, match="refusing to unpickle"):
        data.load("cifar10", tmp_path)
    assert not marker.exists()


def test_cifar10_malformed_batches(tmp_path: Path) -> None:
    make_cifar(tmp_path)
    (tmp_path / "test_batch").write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(DataError, match="holds a list, not a CIFAR-10 batch dict"):
        data.load("cifar10", tmp_path)
    bad = cifar_batch(2, 0)
    bad[b"labels"] = [3, 12]
    (tmp_path / "test_batch").write_bytes(pickle.dumps(bad))
    with pytest.raises(DataError, match=r"'labels' must be 2 integers in 0\.\.9"):
        data.load("cifar10", tmp_path)
    (tmp_path / "test_batch").write_bytes(b"\x80\x02garbage")
    with pytest.raises(DataError, match="not a readable CIFAR-10 batch"):
        data.load("cifar10", tmp_path)
    (tmp_path / "test_batch").unlink()
    with pytest.raises(DataError, match="test_batch is missing"):
        data.load("cifar10", tmp_path)


def test_cifar10_missing_says_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"CIFAR-10 not found in .*cs\.toronto\.edu.*--data-dir DIR"):
        data.load("cifar10", tmp_path)


# ---------------------------------------------------------------- image folders


def write_png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_imagefolder_reads_classes_pixels_and_resizes(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    train = {
        "train/cat/a.png": rng.integers(0, 256, (4, 6, 3), dtype=np.uint8),
        "train/cat/b.png": rng.integers(0, 256, (4, 6, 3), dtype=np.uint8),
        "train/dog/c.png": rng.integers(0, 256, (4, 6, 3), dtype=np.uint8),
    }
    for name, array in train.items():
        write_png(tmp_path / name, array)
    write_png(tmp_path / "val/dog/d.png", np.full((8, 12, 3), 200, dtype=np.uint8))
    (tmp_path / "train/cat/notes.txt").write_text("ignored")
    ds = data.load(f"imagefolder:{tmp_path}")
    assert ds.classes == ["cat", "dog"] and ds.num_classes == 2 and ds.input_shape == (3, 4, 6)
    images, labels = ds.train.tensors
    assert labels.tolist() == [0, 0, 1]
    raw = torch.from_numpy(np.stack(list(train.values()))).permute(0, 3, 1, 2).float() / 255
    mean = raw.mean(dim=(0, 2, 3), keepdim=True)
    std = raw.transpose(0, 1).reshape(3, -1).std(1).reshape(1, 3, 1, 1)
    torch.testing.assert_close(images, (raw - mean) / std)
    test_images, test_labels = ds.test.tensors
    assert test_images.shape == (1, 3, 4, 6) and test_labels.tolist() == [1]
    torch.testing.assert_close(test_images, ((200 / 255 - mean) / std).expand(1, 3, 4, 6))
    assert data.load("imagefolder", tmp_path).classes == ["cat", "dog"]


def test_imagefolder_greyscale_stays_one_channel_and_test_split(tmp_path: Path) -> None:
    write_png(tmp_path / "train/a/1.png", np.zeros((5, 5), np.uint8))
    write_png(tmp_path / "train/b/2.png", np.full((5, 5), 255, np.uint8))
    write_png(tmp_path / "test/b/3.png", np.full((5, 5), 255, np.uint8))
    ds = data.load(f"imagefolder:{tmp_path}")
    assert ds.input_shape == (1, 5, 5) and ds.test.tensors[0].shape == (1, 1, 5, 5)
    write_png(tmp_path / "train/b/4.png", np.zeros((5, 5, 3), np.uint8))
    assert data.load(f"imagefolder:{tmp_path}").input_shape == (3, 5, 5)


def test_imagefolder_errors(tmp_path: Path) -> None:
    (tmp_path / "train").mkdir()
    with pytest.raises(DataError, match=r"train has no class folders"):
        data.load(f"imagefolder:{tmp_path}")
    (tmp_path / "train" / "cat").mkdir()
    with pytest.raises(DataError, match=r"cat has no images"):
        data.load(f"imagefolder:{tmp_path}")
    write_png(tmp_path / "train/cat/a.png", np.zeros((3, 3), np.uint8))
    with pytest.raises(DataError, match=r"has no val/ or test/ folder"):
        data.load(f"imagefolder:{tmp_path}")
    write_png(tmp_path / "val/cow/a.png", np.zeros((3, 3), np.uint8))
    with pytest.raises(DataError, match=r"has classes not in .*train: cow"):
        data.load(f"imagefolder:{tmp_path}")
    (tmp_path / "train/cat/b.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match=r"b\.png is not a readable image"):
        data.load(f"imagefolder:{tmp_path}")
    with pytest.raises(DataError, match=r"does not exist"):
        data.load(f"imagefolder:{tmp_path / 'nothing'}")
    with pytest.raises(DataError, match=r"imagefolder needs a folder"):
        data.load("imagefolder")
    with pytest.raises(DataError, match="give it once"):
        data.load(f"imagefolder:{tmp_path}", tmp_path)


def test_missing_optional_packages_say_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "PIL", None)
    with pytest.raises(DataError, match="pip install pillow"):
        data.load(f"imagefolder:{tmp_path}")
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(DataError, match="pip install scikit-learn"):
        data.load("digits")


# ---------------------------------------------------------------- digits, subsets, registry


def test_digits_shapes_classes_and_fixed_split() -> None:
    ds = data.load("digits")
    images, labels = ds.train.tensors
    assert (len(ds.train), len(ds.test)) == (1437, 360)
    assert images.shape == (1437, 1, 8, 8) and images.dtype == torch.float32 and labels.dtype == torch.int64
    assert ds.input_shape == (1, 8, 8) and ds.num_classes == 10 and ds.classes == [str(d) for d in range(10)]
    assert sorted(labels.unique().tolist()) == list(range(10))
    assert abs(images.mean().item()) < 1e-4 and abs(images.std().item() - 1) < 1e-3
    assert ds.augment is None
    again = data.load("digits")
    assert torch.equal(again.test.tensors[0], ds.test.tensors[0])
    assert data.DEFAULT == "digits"


def test_subset_is_deterministic_and_proportional() -> None:
    first = data.load("digits", subset=100, seed=3)
    second = data.load("digits", subset=100, seed=3)
    other = data.load("digits", subset=100, seed=4)
    assert (len(first.train), len(first.test)) == (100, 25)
    for a, b in zip(first.train.tensors + first.test.tensors, second.train.tensors + second.test.tensors):
        assert torch.equal(a, b)
    assert not torch.equal(first.train.tensors[0], other.train.tensors[0])
    full = data.load("digits").train.tensors[0]
    assert all(any(torch.equal(x, y) for y in full) for x in first.train.tensors[0][:5])
    assert len(data.load("digits", subset=1).test) == 1
    assert len(data.load("digits", subset=10_000).train) == 1437
    for bad in (0, -5, 2.5):
        with pytest.raises(DataError, match="subset must be a positive number"):
            data.load("digits", subset=bad)


def test_test_subset_is_chosen_apart_from_the_training_share() -> None:
    """``test_subset`` fixes the test size; the training subset drawn for the same seed is unchanged."""
    both = data.load("digits", subset=100, seed=3, test_subset=300)
    plain = data.load("digits", subset=100, seed=3)
    assert (len(both.train), len(both.test)) == (100, 300)
    assert torch.equal(both.train.tensors[0], plain.train.tensors[0])
    test_only = data.load("digits", test_subset=50)
    assert (len(test_only.train), len(test_only.test)) == (1437, 50)
    assert len(data.load("digits", subset=100, test_subset=10**6).test) == 360
    with pytest.raises(DataError, match="test subset must be a positive number"):
        data.load("digits", test_subset=0)


def test_unknown_name_lists_valid_ones() -> None:
    assert data.names() == ["cifar10", "digits", "fashion-mnist", "imagefolder:PATH"]
    with pytest.raises(
        DataError, match=r"unknown dataset 'mnist'; valid names: cifar10, digits, fashion-mnist"
    ):
        data.load("mnist")
    with pytest.raises(DataError, match="takes no folder"):
        data.load("digits:/tmp")
    assert issubclass(DataError, ZigpruneError)
    with pytest.raises(DataError, match="Fashion-MNIST not found in /nonexistent-zigprune-dir"):
        data.load("Fashion_MNIST", "/nonexistent-zigprune-dir")


# ---------------------------------------------------------------- augmentation


def test_augment_crops_are_windows_of_the_padded_image_and_flips_mirror() -> None:
    batch = torch.randn(16, 2, 5, 5)
    out = Augment(padding=2, flip=False)(batch, torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(batch, (2, 2, 2, 2))
    windows = [padded[:, :, i : i + 5, j : j + 5] for i in range(5) for j in range(5)]
    hits = torch.stack([(w == out).flatten(1).all(1) for w in windows])
    assert hits.any(0).all()
    assert not torch.equal(out, batch)
    flipped = Augment(flip=True)(batch, torch.Generator().manual_seed(0))
    same = (flipped == batch).flatten(1).all(1)
    mirrored = (flipped == batch.flip(-1)).flatten(1).all(1)
    assert (same | mirrored).all() and same.any() and mirrored.any()
    assert torch.equal(Augment(flip=False)(batch), batch)


def test_docs_examples_run() -> None:
    doc = Path(__file__).resolve().parents[1] / "docs" / "data.md"
    blocks = re.findall(r"```python\n(.*?)```", doc.read_text(), re.S)
    assert len(blocks) == 3
    namespace: dict = {}
    exec(compile("\n".join(blocks), str(doc), "exec"), namespace)
    assert namespace["images"].shape == (64, 1, 8, 8) and set(namespace["result"].speedup) == {1, 64}
    assert (len(namespace["text"].train), len(namespace["text"].test)) == (1439, 360)
