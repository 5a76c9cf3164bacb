import io
import os
import pickle
import tarfile

import numpy as np
import pytest
import torch
from PIL import Image

from slimlab import data as D


def _png(rgb):
    buf = io.BytesIO()
    Image.fromarray(np.full((32, 32, 3), rgb, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def make_tree(root, per_class=3, classes=D.CLASSES):
    for split in ("train", "test"):
        for ci, c in enumerate(classes):
            d = root / split / c
            d.mkdir(parents=True)
            for i in range(per_class):
                (d / f"{i:04d}.png").write_bytes(_png((ci * 20, i * 10, 7)))
    return root


def make_tar(path, tree):
    with tarfile.open(path, "w:gz") as t:
        t.add(tree / "train", arcname="train")
        t.add(tree / "test", arcname="test")
    return path


@pytest.fixture
def tree(tmp_path):
    return make_tree(tmp_path / "tree")


def test_image_folder_decodes_exact_pixels_and_labels(tree, tmp_path):
    d = D.load_cifar10(tree, cache_dir=tmp_path / "c", progress=False, val_size=10)
    assert d.train_x.dtype == torch.uint8 and d.train_x.shape[1:] == (3, 32, 32)
    assert len(d.train_y) + len(d.val_y) == 30 and len(d.test_y) == 30
    assert torch.bincount(d.val_y, minlength=10).tolist() == [1] * 10  # stratified
    # pixel values encode the class: red channel == 20 * label
    for x, y in ((d.train_x, d.train_y), (d.test_x, d.test_y)):
        assert torch.equal(x[:, 0, 0, 0].long(), 20 * y)


def test_tarball_equals_folder_and_cache_is_used(tree, tmp_path, monkeypatch):
    tar = make_tar(tmp_path / "imgs.tar.gz", tree)
    a = D.load_cifar10(tree, cache_dir=tmp_path / "c1", progress=False, val_size=10)
    b = D.load_cifar10(tar, cache_dir=tmp_path / "c2", progress=False, val_size=10)
    assert torch.equal(a.test_x, b.test_x) and torch.equal(a.train_y, b.train_y)
    assert list((tmp_path / "c2").glob("*.npz")), "cache file written"
    assert not list((tmp_path / "c2").glob("*.tmp")), "no temporary file left behind"
    monkeypatch.setattr(D, "read_source", lambda *a, **k: (_ for _ in ()).throw(AssertionError("decoded twice")))
    c = D.load_cifar10(tar, cache_dir=tmp_path / "c2", progress=False, val_size=10)
    assert torch.equal(b.train_x, c.train_x) and c.fingerprint == b.fingerprint


def test_env_var_source(tree, tmp_path, monkeypatch):
    monkeypatch.setenv(D.ENV_VAR, str(tree))
    d = D.load_cifar10(cache_dir=tmp_path / "c", progress=False, val_size=10)
    assert d.source == str(tree)


def test_missing_source_says_how_to_get_data(tmp_path, monkeypatch):
    monkeypatch.delenv(D.ENV_VAR, raising=False)
    with pytest.raises(D.DataError, match="SLIMLAB_CIFAR10"):
        D.load_cifar10(cache_dir=tmp_path / "empty", progress=False)
    with pytest.raises(D.DataError, match="does not exist"):
        D.load_cifar10(tmp_path / "nope", cache_dir=tmp_path / "c", progress=False)


def test_wrong_class_count(tmp_path):
    t = make_tree(tmp_path / "t", classes=D.CLASSES[:9])
    with pytest.raises(D.DataError, match="9 classes"):
        D.load_cifar10(t, cache_dir=tmp_path / "c", progress=False, val_size=10)


def test_unknown_class_folder(tmp_path):
    t = make_tree(tmp_path / "t", classes=D.CLASSES[:9] + ("zebra",))
    with pytest.raises(D.DataError, match="zebra"):
        D.load_cifar10(t, cache_dir=tmp_path / "c", progress=False, val_size=10)


def test_unreadable_image(tree, tmp_path):
    (tree / "train" / "cat" / "0001.png").write_bytes(b"not an image")
    with pytest.raises(D.DataError, match="unreadable image.*0001.png"):
        D.load_cifar10(tree, cache_dir=tmp_path / "c", progress=False, val_size=10)


def test_wrong_image_size(tree, tmp_path):
    Image.new("RGB", (16, 16)).save(tree / "test" / "dog" / "0000.png")
    with pytest.raises(D.DataError, match="expected 32x32"):
        D.load_cifar10(tree, cache_dir=tmp_path / "c", progress=False, val_size=10)


def test_truncated_archive(tree, tmp_path):
    tar = make_tar(tmp_path / "imgs.tar.gz", tree)
    cut = tmp_path / "cut.tar.gz"
    cut.write_bytes(tar.read_bytes()[: tar.stat().st_size // 2])
    with pytest.raises(D.DataError, match="truncated|unreadable"):
        D.load_cifar10(cut, cache_dir=tmp_path / "c", progress=False, val_size=10)


def test_not_an_archive(tmp_path):
    f = tmp_path / "x.bin"
    f.write_bytes(b"hello")
    with pytest.raises(D.DataError, match="not a tar archive"):
        D.load_cifar10(f, cache_dir=tmp_path / "c", progress=False)


@pytest.mark.parametrize("kind", ["escape", "symlink"])
def test_unsafe_tar_members_refused(tree, tmp_path, kind):
    bad = tmp_path / f"{kind}.tar.gz"
    with tarfile.open(bad, "w:gz") as t:
        t.add(tree / "train" / "cat" / "0000.png", arcname="train/cat/0000.png")
        if kind == "escape":
            t.add(tree / "train" / "cat" / "0001.png", arcname="../evil/train/cat/0001.png")
        else:
            info = tarfile.TarInfo("train/cat/0002.png")
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            t.addfile(info)
    with pytest.raises(D.DataError, match="outside the archive|link"):
        D.load_cifar10(bad, cache_dir=tmp_path / "c", progress=False, val_size=10)
    assert not (tmp_path / "evil").exists()


def test_official_format_md5_checked_before_unpickling(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for name in D.OFFICIAL_BATCH_MD5:
        (folder / name).write_bytes(pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 1]}))
    with pytest.raises(D.DataError, match="MD5"):
        D.load_cifar10(folder, cache_dir=tmp_path / "c", progress=False)
    (folder / "test_batch").unlink()
    with pytest.raises(D.DataError, match="missing official batch"):
        D.load_cifar10(folder, cache_dir=tmp_path / "c", progress=False)


def test_fingerprint_changes_with_content(tree):
    a = D.fingerprint(tree)
    (tree / "test" / "cat" / "0000.png").write_bytes(_png((1, 2, 3)))
    assert D.fingerprint(tree) != a


def test_load_argument_errors(tmp_path):
    with pytest.raises(TypeError, match="source must be a path"):
        D.load_cifar10(123)
    with pytest.raises(ValueError, match="val_size"):
        D.load_cifar10(tmp_path, val_size=3)


def test_stratified_subset_is_seeded_and_balanced():
    y = torch.arange(10).repeat(100)
    x = torch.arange(1000)[:, None, None, None].expand(1000, 1, 1, 1)
    xs, ys = D.subset(x, y, 200, seed=3)
    assert torch.bincount(ys).tolist() == [20] * 10
    assert torch.equal(xs.flatten() % 10, ys)
    xs2, _ = D.subset(x, y, 200, seed=3)
    xs3, _ = D.subset(x, y, 200, seed=4)
    assert torch.equal(xs, xs2) and not torch.equal(xs, xs3)
    assert D.subset(x, y, 0)[0] is x  # 0 means all
    with pytest.raises(ValueError, match="n must be >= 0"):
        D.subset(x, y, -1)
    with pytest.raises(TypeError, match="n must be an int"):
        D.subset(x, y, 2.5)
    with pytest.raises(ValueError, match="n must be in 1..1000"):
        D.stratified_indices(y, 1001)


def test_augment_is_a_crop_of_the_padded_image_or_its_flip():
    g = torch.Generator().manual_seed(0)
    x = torch.randint(1, 255, (64, 3, 32, 32), dtype=torch.uint8)
    out = D.augment(x, g)
    assert out.shape == x.shape and out.dtype == torch.uint8
    for i in range(64):
        padded = [torch.nn.functional.pad(v, (4, 4, 4, 4)) for v in (x[i], x[i].flip(2))]
        ok = any(torch.equal(out[i], p[:, r:r + 32, c:c + 32]) for p in padded for r in range(9) for c in range(9))
        assert ok, f"image {i} is not a flip/crop of its padded source"
    assert not torch.equal(out, x)
    with pytest.raises(ValueError, match="augment expects a batch"):
        D.augment(x[0])


def test_batches_cover_every_example_once():
    x = torch.arange(10, dtype=torch.uint8)[:, None, None, None].expand(10, 3, 32, 32).contiguous()
    y = torch.arange(10)
    seen = torch.cat([yb for _, yb in D.batches(x, y, 3, shuffle=True, generator=torch.Generator().manual_seed(1))])
    assert sorted(seen.tolist()) == list(range(10))
    xb, yb = next(D.batches(x, y, 4))
    assert xb.dtype == torch.float32 and torch.allclose(xb[:, 0, 0, 0] * 255, yb.float())
    with pytest.raises(ValueError, match="batch_size"):
        next(D.batches(x, y, 0))
    with pytest.raises(ValueError, match="differ in length"):
        next(D.batches(x, y[:5], 2))


def test_real_cifar10(cifar):
    assert cifar.classes == D.CLASSES
    assert (len(cifar.train_y), len(cifar.val_y), len(cifar.test_y)) == (45000, 5000, 10000)
    assert torch.bincount(cifar.val_y).tolist() == [500] * 10
    assert torch.bincount(cifar.test_y).tolist() == [1000] * 10
    assert cifar.train_x.dtype == torch.uint8 and cifar.train_x.shape[1:] == (3, 32, 32)
    assert 90 < cifar.test_x.float().mean() < 160  # natural images, not blank


def test_no_source_never_falls_back_to_some_cache(tree, tmp_path, monkeypatch):
    # the old loader returned any cache file here: after loading a tiny dataset once, a plain
    # load_cifar10() silently returned that tiny dataset
    monkeypatch.delenv(D.ENV_VAR, raising=False)
    monkeypatch.setattr(D, "DOWNLOAD_DIR", tmp_path / "no-downloads")
    D.load_cifar10(tree, cache_dir=tmp_path / "c", progress=False, val_size=10)
    with pytest.raises(D.DataError, match=r"Caches found in .*cifar10-[0-9a-f]{16}-v1\.npz \(from tree, 30 train") as e:
        D.load_cifar10(cache_dir=tmp_path / "c", progress=False, val_size=10)
    assert "SLIMLAB_CIFAR10" in str(e.value) and "source" in str(e.value)


def test_an_earlier_download_is_configured_data(tmp_path, monkeypatch):
    monkeypatch.delenv(D.ENV_VAR, raising=False)
    monkeypatch.setattr(D, "DOWNLOAD_DIR", tmp_path / "dl")
    (tmp_path / "dl" / "cifar-10-batches-py").mkdir(parents=True)
    seen = []
    monkeypatch.setattr(D, "_cached_arrays", lambda src, *a: seen.append(src) or (_ for _ in ()).throw(D.DataError("stop")))
    with pytest.raises(D.DataError, match="stop"):
        D.load_cifar10(cache_dir=tmp_path / "c", progress=False)
    assert seen == [tmp_path / "dl" / "cifar-10-batches-py"]


def test_too_small_for_the_validation_split_names_val_size_and_caches_nothing(tree, tmp_path):
    # 3 training images per class: val_size=30 holds out all of them
    with pytest.raises(D.DataError, match=r"val_size=30 .* smaller val_size \(at most 20\)"):
        D.load_cifar10(tree, cache_dir=tmp_path / "c", progress=False, val_size=30)
    assert not (tmp_path / "c").exists() or not list((tmp_path / "c").iterdir())
    d = D.load_cifar10(tree, cache_dir=tmp_path / "c", progress=False, val_size=20)
    assert len(d.val_y) == 20 and torch.bincount(d.train_y, minlength=10).min() == 1
    # with a valid cache present, a too-large val_size is refused the same way
    with pytest.raises(D.DataError, match="val_size=100"):
        D.load_cifar10(tree, cache_dir=tmp_path / "c", progress=False, val_size=100)


def test_a_bad_folder_writes_no_cache(tree, tmp_path):
    (tree / "train" / "cat" / "0001.png").write_bytes(b"not an image")
    with pytest.raises(D.DataError):
        D.load_cifar10(tree, cache_dir=tmp_path / "c", progress=False, val_size=10)
    assert not (tmp_path / "c").exists() or not list((tmp_path / "c").iterdir())


def test_folder_symlinks_pointing_outside_are_refused(tree, tmp_path):
    secret = tmp_path / "secret.png"
    secret.write_bytes(_png((250, 250, 250)))
    (tree / "train" / "cat" / "0009.png").symlink_to(secret)
    with pytest.raises(D.DataError, match="symlink to .*secret.png, outside the source folder"):
        D.load_cifar10(tree, cache_dir=tmp_path / "c", progress=False, val_size=10)
    with pytest.raises(D.DataError, match="outside the source folder"):
        D.fingerprint(tree)   # the fingerprint does not read outside files either
    assert not (tmp_path / "c").exists() or not list((tmp_path / "c").iterdir())
    (tree / "train" / "cat" / "0009.png").unlink()
    outside_dir = tmp_path / "elsewhere"
    outside_dir.mkdir()
    (tree / "test" / "dog" / "more").symlink_to(outside_dir, target_is_directory=True)
    with pytest.raises(D.DataError, match="outside the source folder"):
        D.load_cifar10(tree, cache_dir=tmp_path / "c", progress=False, val_size=10)
    (tree / "test" / "dog" / "more").unlink()
    (tree / "train" / "cat" / "0009.png").symlink_to(tree / "train" / "cat" / "0000.png")  # inside: fine
    d = D.load_cifar10(tree, cache_dir=tmp_path / "c", progress=False, val_size=10)
    assert len(d.train_y) + len(d.val_y) == 31


def test_damaged_cache_is_rebuilt(tree, tmp_path):
    a = D.load_cifar10(tree, cache_dir=tmp_path / "c", progress=False, val_size=10)
    (cache,) = (tmp_path / "c").glob("*.npz")
    cache.write_bytes(cache.read_bytes()[:100])
    b = D.load_cifar10(tree, cache_dir=tmp_path / "c", progress=False, val_size=10)
    assert torch.equal(a.train_x, b.train_x)
    with np.load(cache) as z:            # rebuilt, whole, and without a machine path in it
        assert len(z["train_y"]) == 30 and str(z["source"]) == "tree"


def test_root_follows_slimlab_home(tmp_path, monkeypatch):
    monkeypatch.setenv(D.HOME_VAR, str(tmp_path / "home"))
    root, why = D.find_root()
    assert root == (tmp_path / "home").resolve() and why == "$SLIMLAB_HOME"
    monkeypatch.delenv(D.HOME_VAR)
    root, why = D.find_root()
    assert (root / "pyproject.toml").is_file() and "checkout" in why   # the tests run from a checkout
