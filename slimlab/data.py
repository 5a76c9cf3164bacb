"""CIFAR-10 as in-memory uint8 tensors, from any local copy or torchvision's download.

`load_cifar10()` reads only the data you configured: the `source` argument, else the
`SLIMLAB_CIFAR10` environment variable, else an earlier torchvision download in
`data/downloads/` (or a new one with `download=True`). It never picks some cache file on its
own: with nothing configured it refuses and names the caches it found. Accepted sources:

* the official `cifar-10-python.tar.gz`, or its extracted `cifar-10-batches-py/`
  (the official MD5s are checked before anything is unpickled);
* an image-folder tree `train|test/<class>/*.png|jpg`, or a tarball of one.

Decoding happens once; a compact `.npz` keyed by the source's fingerprint is cached
under `data/cache/` (written atomically, and only after the data passed every check), so
later loads take a second or two. A damaged cache is rebuilt. Links in a tarball, and
symlinks in a folder that point outside it, are refused.

`ROOT` is where the project's data, checkpoints and results live (see `find_root`):
`$SLIMLAB_HOME` when set, else the slimlab checkout the package (or the current folder)
sits in, else a user folder (`$XDG_DATA_HOME/slimlab`, by default `~/.local/share/slimlab`).
"""
from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from .files import atomic_path, file_hash

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
ENV_VAR = "SLIMLAB_CIFAR10"
HOME_VAR = "SLIMLAB_HOME"


def _is_checkout(d: Path) -> bool:
    """A slimlab checkout: pyproject.toml naming the project `slimlab`, with the slimlab/ package beside."""
    try:
        return ((d / "slimlab" / "__init__.py").is_file()
                and 'name = "slimlab"' in (d / "pyproject.toml").read_text(errors="replace"))
    except OSError:
        return False


def find_root() -> tuple[Path, str]:
    """(folder, why): where the project's data/, results/ and build/ live.

    In order: `$SLIMLAB_HOME`; the checkout that holds the imported package (an editable install, or
    the project on PYTHONPATH); the checkout that holds the current working directory (a non-editable
    `pip install .` used from inside a checkout); else the user folder `$XDG_DATA_HOME/slimlab`
    (default `~/.local/share/slimlab`), which holds no committed checkpoints: point `SLIMLAB_HOME` at a
    checkout to use them. Nothing is created here; folders appear when something is written."""
    env = os.environ.get(HOME_VAR)
    if env:
        return Path(env).expanduser().resolve(), f"${HOME_VAR}"
    pkg_parent = Path(__file__).resolve().parent.parent
    if _is_checkout(pkg_parent):
        return pkg_parent, "the checkout that holds the slimlab package"
    try:
        here = Path.cwd().resolve()
    except OSError:
        here = None
    for d in ([here, *here.parents] if here is not None else []):
        if _is_checkout(d):
            return d, "the checkout that holds the current folder"
    base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share").expanduser()
    return (base / "slimlab").resolve(), (f"the user folder (not in a checkout and ${HOME_VAR} unset; "
                                          f"set {HOME_VAR} to a checkout to use its committed checkpoints)")


ROOT, ROOT_REASON = find_root()
CACHE_DIR = ROOT / "data" / "cache"
DOWNLOAD_DIR = ROOT / "data" / "downloads"
VAL_SIZE = 5000
SPLIT_SEED = 0
_CACHE_VERSION = "v1"

# The official release's checksums (https://www.cs.toronto.edu/~kriz/cifar.html).
OFFICIAL_TARBALL_MD5 = "c58f30108f718f92721af3b95e74349a"
OFFICIAL_BATCH_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
}
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")

HOW_TO_GET = (
    "No CIFAR-10 source found. Either (a) allow the download: call load_cifar10(download=True) "
    "(torchvision fetches the official 163 MB archive into data/downloads/), or (b) point "
    f"{ENV_VAR} (or the `source` argument) at a local copy: the official cifar-10-python.tar.gz, "
    "an extracted cifar-10-batches-py/ folder, or an image-folder tree train|test/<class>/*.jpg "
    "(or a .tar.gz of one, e.g. the course's offline copy cifar10-jpeg.tar.gz)."
)


class DataError(ValueError):
    """A CIFAR-10 source that is missing, malformed or corrupt."""


@dataclass
class CIFAR10:
    """CIFAR-10 in memory. Images uint8 (N, 3, 32, 32); labels int64 (N,)."""
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: tuple[str, ...]
    fingerprint: str  # sha256 of the source (file bytes, or file names + bytes for a folder)
    source: str

    def summary(self) -> str:
        """Sizes and fingerprint; the source by its file name only (no machine path in shared outputs)."""
        name = self.source if self.source == "torchvision download" else Path(self.source).name
        return (f"CIFAR-10 from {name}\n  train {len(self.train_y):,}  val {len(self.val_y):,}  "
                f"test {len(self.test_y):,}  fingerprint {self.fingerprint[:16]}…")


# ---------------------------------------------------------------------------------------------
# fingerprints and safe archive reading

def _md5_bytes(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _inside(root: Path, p: Path) -> Path:
    """`p` itself, or the file a symlink `p` points to when that lies inside `root` (resolved);
    DataError for a link that points outside `root` or to a folder (as tarball links are refused)."""
    if not p.is_symlink():
        return p
    target = p.resolve()
    if not target.is_relative_to(root.resolve()):
        raise DataError(f"{p} is a symlink to {target}, outside the source folder {root}; refusing to follow it")
    if target.is_dir():
        raise DataError(f"{p} is a symlink to a folder; links to folders are not followed")
    return target


def _folder_files(root: Path) -> list[Path]:
    """Every file under `root` (sorted), links checked by `_inside`; folders reached through links are
    not entered."""
    out = []
    for d, dirs, files in os.walk(root, followlinks=False):
        for name in dirs + files:
            p = Path(d) / name
            if p.is_symlink():
                _inside(root, p)
            if name in files:
                out.append(p)
    return sorted(out)


def fingerprint(path: str | os.PathLike) -> str:
    """sha256 of a source: the bytes of a file, or the names and bytes of a folder's files."""
    p = Path(path)
    if p.is_file():
        return file_hash(p, "sha256")
    if p.is_dir():
        h = hashlib.sha256()
        for f in _folder_files(p):
            h.update(str(f.relative_to(p)).encode())
            h.update(f.read_bytes())
        return h.hexdigest()
    raise DataError(f"CIFAR-10 source {str(p)!r} does not exist")


def _safe_members(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    """Regular-file members only; refuses links, devices and paths that escape the archive."""
    for m in tar:
        name = m.name
        parts = Path(name).parts
        if name.startswith(("/", "\\")) or ".." in parts:
            raise DataError(f"archive member {name!r} points outside the archive; refusing to read it")
        if m.issym() or m.islnk():
            raise DataError(f"archive member {name!r} is a link; links are refused")
        if m.isdir():
            continue
        if not m.isfile():
            raise DataError(f"archive member {name!r} is not a regular file; refusing it")
        yield m


def _decode_image(data: bytes, where: str) -> np.ndarray:
    from PIL import Image
    try:
        with Image.open(io.BytesIO(data)) as im:
            arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except Exception as e:  # PIL raises many types for bad files
        raise DataError(f"unreadable image {where}: {e}") from None
    if arr.shape != (32, 32, 3):
        raise DataError(f"image {where} is {arr.shape[1]}x{arr.shape[0]}, expected 32x32")
    return arr.transpose(2, 0, 1)


def _split_class(rel: str) -> tuple[str, str] | None:
    """('train'|'test', class) for a path …/train/<class>/<file>, else None."""
    parts = Path(rel).parts
    if len(parts) < 3 or not parts[-1].lower().endswith(_IMAGE_SUFFIXES):
        return None
    split, cls = parts[-3], parts[-2]
    if split not in ("train", "test"):
        return None
    return split, cls


def _assemble(items: dict[str, list[tuple[str, str, np.ndarray]]], where: str):
    """Stack (class, name, image) per split into arrays, checking the classes."""
    out = {}
    for split in ("train", "test"):
        rows = items.get(split, [])
        if not rows:
            raise DataError(f"{where}: no '{split}/<class>/*.jpg|png' images found (wrong layout?)")
        classes = sorted({c for c, _, _ in rows})
        if len(classes) != 10:
            raise DataError(f"{where}: '{split}' has {len(classes)} classes ({', '.join(classes)}), expected 10")
        unknown = set(classes) - set(CLASSES)
        if unknown:
            raise DataError(f"{where}: unknown class folders {sorted(unknown)}; expected {list(CLASSES)}")
        rows.sort(key=lambda r: (CLASSES.index(r[0]), r[1]))
        out[split] = (np.stack([r[2] for r in rows]),
                      np.array([CLASSES.index(r[0]) for r in rows], dtype=np.int64))
    return out["train"][0], out["train"][1], out["test"][0], out["test"][1]


def _read_image_tarball(path: Path, progress: bool):
    from tqdm.auto import tqdm
    items: dict[str, list] = {}
    try:
        with tarfile.open(path, "r:*") as tar:
            for m in tqdm(_safe_members(tar), desc="decoding CIFAR-10 images", unit="img",
                          disable=not progress, total=60000, mininterval=1.0):
                sc = _split_class(m.name)
                if sc is None:
                    continue
                f = tar.extractfile(m)
                data = f.read() if f is not None else b""
                items.setdefault(sc[0], []).append((sc[1], Path(m.name).name, _decode_image(data, m.name)))
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DataError(f"{path}: unreadable or truncated archive ({e})") from None
    return _assemble(items, str(path))


def _read_image_folder(path: Path, progress: bool):
    from tqdm.auto import tqdm
    items: dict[str, list] = {}
    files = _folder_files(path)
    for f in tqdm(files, desc="decoding CIFAR-10 images", unit="img", disable=not progress, mininterval=1.0):
        sc = _split_class(str(f.relative_to(path)))
        if sc is None:
            continue
        items.setdefault(sc[0], []).append((sc[1], f.name, _decode_image(f.read_bytes(), str(f))))
    return _assemble(items, str(path))


def _unpickle_batches(blobs: dict[str, bytes], where: str):
    missing = sorted(set(OFFICIAL_BATCH_MD5) - set(blobs))
    if missing:
        raise DataError(f"{where}: missing official batch files {missing}")
    for name, md5 in OFFICIAL_BATCH_MD5.items():
        if _md5_bytes(blobs[name]) != md5:
            raise DataError(f"{where}: {name} fails the official MD5 check (corrupt or not the official "
                            "release); refusing to unpickle it")

    def load(name):
        d = pickle.loads(blobs[name], encoding="bytes")  # safe: MD5 matched the official file
        return (np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32),
                np.asarray(d[b"labels"], dtype=np.int64))

    tr = [load(f"data_batch_{i}") for i in range(1, 6)]
    te = load("test_batch")
    return np.concatenate([a for a, _ in tr]), np.concatenate([b for _, b in tr]), te[0], te[1]


def _read_official_tarball(path: Path):
    blobs = {}
    try:
        with tarfile.open(path, "r:gz") as tar:
            for m in _safe_members(tar):
                base = Path(m.name).name
                if base in OFFICIAL_BATCH_MD5:
                    blobs[base] = tar.extractfile(m).read()
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DataError(f"{path}: unreadable or truncated archive ({e})") from None
    return _unpickle_batches(blobs, str(path))


def _read_official_folder(path: Path):
    blobs = {n: _inside(path, path / n).read_bytes() for n in OFFICIAL_BATCH_MD5 if (path / n).is_file()}
    return _unpickle_batches(blobs, str(path))


def _tar_kind(path: Path) -> str:
    """'official' or 'images', by peeking at the member names."""
    try:
        with tarfile.open(path, "r:*") as tar:
            for i, m in enumerate(tar):
                base = Path(m.name).name
                if base in OFFICIAL_BATCH_MD5:
                    return "official"
                if base.lower().endswith(_IMAGE_SUFFIXES):
                    return "images"
                if i > 50:
                    break
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DataError(f"{path}: unreadable or truncated archive ({e})") from None
    raise DataError(f"{path}: neither the official CIFAR-10 archive nor a tarball of "
                    "train|test/<class>/*.jpg images")


def read_source(path: str | os.PathLike, progress: bool = True):
    """Decode a source into (train_x, train_y, test_x, test_y) numpy arrays, uint8 NCHW."""
    p = Path(path)
    if not p.exists():
        raise DataError(f"CIFAR-10 source {str(p)!r} does not exist. " + HOW_TO_GET)
    if p.is_dir():
        if (p / "data_batch_1").exists() or (p / "test_batch").exists():
            return _read_official_folder(p)
        if (p / "cifar-10-batches-py").is_dir():
            return _read_official_folder(p / "cifar-10-batches-py")
        return _read_image_folder(p, progress)
    if not tarfile.is_tarfile(p):
        raise DataError(f"{p}: not a tar archive nor a folder; " + HOW_TO_GET)
    if _tar_kind(p) == "official":
        return _read_official_tarball(p)
    return _read_image_tarball(p, progress)


# ---------------------------------------------------------------------------------------------
# splits, cache and the public loader

def stratified_indices(labels: torch.Tensor | np.ndarray, n: int, seed: int = 0) -> torch.Tensor:
    """`n` indices drawn without replacement, the same share from every class, seeded."""
    y = torch.as_tensor(labels)
    if not isinstance(n, int) or isinstance(n, bool):
        raise TypeError(f"n must be an int, got {type(n).__name__}")
    if n <= 0 or n > len(y):
        raise ValueError(f"n must be in 1..{len(y)} (the number of labels), got {n}")
    g = torch.Generator().manual_seed(seed)
    classes = torch.unique(y)
    per = [torch.nonzero(y == c).flatten() for c in classes]
    per = [idx[torch.randperm(len(idx), generator=g)] for idx in per]
    base, rest = divmod(n, len(classes))
    take = [base + (1 if i < rest else 0) for i in range(len(classes))]
    if any(t > len(idx) for t, idx in zip(take, per)):
        raise ValueError(f"n={n} asks for more images of some class than it has")
    out = torch.cat([idx[:t] for t, idx in zip(take, per)])
    return out[torch.randperm(len(out), generator=g)]


def subset(x: torch.Tensor, y: torch.Tensor, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A seeded stratified subset of `n` examples (n=0 or n >= len means all)."""
    if not isinstance(n, int) or isinstance(n, bool):
        raise TypeError(f"n must be an int, got {type(n).__name__}")
    if n < 0:
        raise ValueError(f"n must be >= 0 (0 = all), got {n}")
    if n == 0 or n >= len(y):
        return x, y
    idx = stratified_indices(y, n, seed)
    return x[idx], y[idx]


def _atomic_savez(path: Path, **arrays) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def _check_arrays(arrays, where: str, val_size: int) -> None:
    """DataError unless the four arrays are CIFAR-shaped (uint8 (N, 3, 32, 32), labels 0..9) and the
    training images leave, in every class, at least one image beside its share of `val_size`."""
    trx, try_, tex, tey = arrays
    for name, x, y in (("train", trx, try_), ("test", tex, tey)):
        if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1:] != (3, 32, 32) or len(x) != len(y):
            raise DataError(f"{where}: {name} images are {x.dtype} {x.shape} with {len(y)} labels; "
                            "expected uint8 (N, 3, 32, 32) with N labels")
        if len(y) and (y.min() < 0 or y.max() >= len(CLASSES)):
            raise DataError(f"{where}: {name} labels outside 0..{len(CLASSES) - 1}")
    counts = np.bincount(try_, minlength=len(CLASSES))
    need = -(-val_size // len(CLASSES))  # the largest per-class share of the validation split
    if val_size >= len(try_) or counts.min() <= need:
        raise DataError(f"{where}: val_size={val_size} holds out up to {need} training images per class, but "
                        f"the source has {len(try_):,} training images ({counts.min()} in its smallest class); "
                        f"every class must keep at least one for training. Pass a smaller val_size "
                        f"(at most {max(0, (counts.min() - 1) * len(CLASSES))}) or a larger source.")


_KEYS = ("train_x", "train_y", "test_x", "test_y")


def _read_cache(cache: Path):
    """The four arrays of a cache file, or None when it is missing or damaged (then it is removed)."""
    if not cache.is_file():
        return None
    try:
        with np.load(cache, allow_pickle=False) as z:
            arrays = tuple(np.asarray(z[k]) for k in _KEYS)
        _check_arrays(arrays, str(cache), val_size=0)
        return arrays
    except Exception:  # zip / npy errors, missing keys, wrong shapes: rebuild from the source
        cache.unlink(missing_ok=True)
        return None


def _cached_arrays(src: Path, cache_dir: Path, progress: bool, val_size: int):
    """(fingerprint, arrays) of `src`: from its cache when valid, else decoded, checked, then cached."""
    fp = fingerprint(src)
    cache = cache_dir / f"cifar10-{fp[:16]}-{_CACHE_VERSION}.npz"
    arrays = _read_cache(cache)
    if arrays is None:
        arrays = read_source(src, progress=progress)
        _check_arrays(arrays, str(src), val_size)
        _atomic_savez(cache, **dict(zip(_KEYS, arrays)), source=np.array(src.name))
    else:
        _check_arrays(arrays, str(src), val_size)
    return fp, arrays


def _describe_caches(cache_dir: Path) -> str:
    found = sorted(cache_dir.glob(f"cifar10-*-{_CACHE_VERSION}.npz")) if cache_dir.is_dir() else []
    if not found:
        return ""
    rows = []
    for c in found:
        try:
            with np.load(c, allow_pickle=False) as z:
                rows.append(f"{c.name} (from {z['source']}, {len(z['train_y']):,} train / {len(z['test_y']):,} test)")
        except Exception:
            rows.append(f"{c.name} (unreadable)")
    return (f" Caches found in {cache_dir}: {'; '.join(rows)}. They are not used unless you name their "
            f"source: a cache is only ever the copy of the source you configure.")


def load_cifar10(source: str | os.PathLike | None = None, *, download: bool = False,
                 cache_dir: str | os.PathLike | None = None, progress: bool = True,
                 val_size: int = VAL_SIZE) -> CIFAR10:
    """CIFAR-10 with a seeded stratified 5,000-image validation split held out of train.

    Source: `source`, else `$SLIMLAB_CIFAR10`, else an earlier torchvision download in
    `data/downloads/`, else a new download (only when `download=True`); with none of these it raises
    a DataError that names the caches it found (never silently picking one). `val_size` training
    images (stratified, seeded) form the validation split; a source too small for it is refused
    before anything is cached.
    """
    if isinstance(val_size, bool) or not isinstance(val_size, int) or val_size < 10:
        raise ValueError(f"val_size must be an int >= 10 (one per class at least), got {val_size!r}")
    if source is not None and not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"source must be a path (str or os.PathLike), got {type(source).__name__}")
    cdir = Path(cache_dir) if cache_dir is not None else CACHE_DIR
    src = source if source is not None else (os.environ.get(ENV_VAR) or None)
    downloaded = DOWNLOAD_DIR / "cifar-10-batches-py"
    if src is not None:
        fp, (trx, try_, tex, tey) = _cached_arrays(Path(src).expanduser(), cdir, progress, val_size)
        where = str(src)
    elif downloaded.is_dir() or download:
        if not downloaded.is_dir():
            import torchvision
            torchvision.datasets.CIFAR10(str(DOWNLOAD_DIR), train=True, download=True)
            tarball = DOWNLOAD_DIR / "cifar-10-python.tar.gz"
            if tarball.is_file() and file_hash(tarball, "md5") != OFFICIAL_TARBALL_MD5:
                raise DataError(f"{tarball}: download fails the official MD5 check")
        fp, (trx, try_, tex, tey) = _cached_arrays(downloaded, cdir, progress, val_size)
        where = "torchvision download"
    else:
        raise DataError(HOW_TO_GET + _describe_caches(cdir))

    train_x, train_y = torch.from_numpy(np.ascontiguousarray(trx)), torch.from_numpy(try_)
    val_idx = stratified_indices(train_y, val_size, seed=SPLIT_SEED)
    keep = torch.ones(len(train_y), dtype=torch.bool)
    keep[val_idx] = False
    return CIFAR10(
        train_x=train_x[keep], train_y=train_y[keep], val_x=train_x[val_idx], val_y=train_y[val_idx],
        test_x=torch.from_numpy(np.ascontiguousarray(tex)), test_y=torch.from_numpy(tey),
        classes=CLASSES, fingerprint=fp, source=where,
    )


# ---------------------------------------------------------------------------------------------
# batches: conversion and augmentation on whole tensors

def augment(x: torch.Tensor, generator: torch.Generator | None = None, pad: int = 4,
            cutout: int = 0) -> torch.Tensor:
    """Random crop with zero padding `pad`, random horizontal flip and, with `cutout` > 0, one
    `cutout`×`cutout` square per image (centre anywhere, clipped at the border) set to the
    dataset's mean colour (DeVries & Taylor 2017) — of a uint8 batch (B, 3, H, W)."""
    if x.dim() != 4:
        raise ValueError(f"augment expects a batch (B, C, H, W), got shape {tuple(x.shape)}")
    b, c, h, w = x.shape
    flip = torch.rand(b, generator=generator) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    if pad > 0:
        x = _crop(x, pad, generator)
    return _cutout(x, cutout, generator) if cutout > 0 else x


def _crop(x: torch.Tensor, pad: int, generator: torch.Generator | None) -> torch.Tensor:
    b, c, h, w = x.shape
    xp = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    oy = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    ox = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    rows = (oy[:, None] + torch.arange(h))[:, None, :, None]  # (B, 1, H, 1)
    cols = (ox[:, None] + torch.arange(w))[:, None, None, :]  # (B, 1, 1, W)
    bi = torch.arange(b)[:, None, None, None]
    ci = torch.arange(c)[None, :, None, None]
    return xp[bi, ci, rows, cols]


def _cutout(x: torch.Tensor, size: int, generator: torch.Generator | None) -> torch.Tensor:
    from .models import CIFAR_MEAN
    b, c, h, w = x.shape
    cy = torch.randint(0, h, (b,), generator=generator)[:, None]
    cx = torch.randint(0, w, (b,), generator=generator)[:, None]
    r, q = torch.arange(h)[None, :], torch.arange(w)[None, :]
    inside_r = (r >= cy - size // 2) & (r < cy - size // 2 + size)   # (B, H)
    inside_c = (q >= cx - size // 2) & (q < cx - size // 2 + size)   # (B, W)
    hole = (inside_r[:, :, None] & inside_c[:, None, :])[:, None]     # (B, 1, H, W)
    fill = torch.tensor([round(255 * m) for m in CIFAR_MEAN[:c]] + [128] * max(0, c - 3), dtype=x.dtype)
    return torch.where(hole, fill.view(1, c, 1, 1), x)


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float32 in [0, 1]."""
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()


def batches(x: torch.Tensor, y: torch.Tensor, batch_size: int, *, shuffle: bool = False,
            augment_data: bool = False, generator: torch.Generator | None = None,
            drop_last: bool = False, cutout: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield (float images in [0, 1], labels) batches; augmentation works on whole batches."""
    if len(x) != len(y):
        raise ValueError(f"x and y differ in length: {len(x)} vs {len(y)}")
    if not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
    n = len(y)
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    stop = n - n % batch_size if drop_last else n
    for i in range(0, stop, batch_size):
        idx = order[i:i + batch_size]
        xb = x[idx]
        if augment_data:
            xb = augment(xb, generator, cutout=cutout)
        yield to_float(xb), y[idx]
