"""The interchange format: a folder of PNG images and ``labels.jsonl``.

Every simgan command reads and writes this format::

    DIR/
      labels.jsonl        one JSON object per image: {"file": "img/000001.png", "gaze": [...], ...}
      img/000001.png      8-bit gray or RGB, or 16-bit gray (depth)

``"file"`` is the image path relative to ``DIR``; every other key is a label that simgan never
interprets and always passes through byte for byte (refining keeps each ``labels.jsonl`` line
identical). A folder of images with no ``labels.jsonl`` is a valid unlabelled set (the real
images of S+U learning, §2): its images are all image files below it, in sorted order.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import SimganError
from ..files import atomic_write_bytes, fsync_dir
from . import png

LABELS_FILE = "labels.jsonl"

# An image whose header claims more pixels than Pillow's limit is refused as a bad file (one line
# naming it), not decoded and not printed as a warning.
warnings.simplefilter("error", Image.DecompressionBombWarning)
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class ImageSpec:
    """Shape and pixel type shared by every image of a dataset."""

    height: int
    width: int
    channels: int
    bit_depth: int = 8  # 8 or 16

    @property
    def max_value(self) -> int:
        return (1 << self.bit_depth) - 1

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(np.uint8 if self.bit_depth == 8 else np.uint16)

    def describe(self) -> str:
        kind = {1: "gray", 3: "RGB"}.get(self.channels, f"{self.channels}-channel")
        return f"{self.width}x{self.height} {self.bit_depth}-bit {kind}"


@dataclass(frozen=True)
class Record:
    """One image of a dataset: its relative path and, if labelled, its labels line verbatim."""

    file: str
    line: bytes | None = None

    def labels(self) -> dict:
        """The labels of this image (every key of its JSON object but ``"file"``)."""
        if self.line is None:
            return {}
        obj = json.loads(self.line)
        obj.pop("file", None)
        return obj


# ----------------------------------------------------------------------------------------------
# pixels


def decode_image(path: Path | str) -> np.ndarray:
    """Read one image file as an ``H x W x C`` array (uint8, or uint16 for 16-bit gray).

    Palette and alpha images are converted to gray or RGB; anything unreadable raises a
    :class:`SimganError` naming the file. Plain gray and RGB PNGs are decoded by the fast codec
    (:mod:`simgan.datasets.png`) to the same pixels.
    """
    try:
        if str(path).lower().endswith(".png"):
            fast = png.decode(path, Image.MAX_IMAGE_PIXELS)
            if fast is not None:
                return fast
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im)
                if mode == "I":  # 16-bit PNGs can open as 32-bit 'I'
                    if arr.min() < 0 or arr.max() > 65535:
                        raise SimganError(f"{path}: 32-bit integer image is out of 16-bit range")
                arr = arr.astype(np.uint16)
                return arr[:, :, None]
            if mode in ("1", "L"):
                return np.asarray(im.convert("L"))[:, :, None]
            if mode == "LA":
                return np.asarray(im.convert("L"))[:, :, None]
            if mode == "P":
                im = im.convert("RGBA" if "transparency" in im.info else "RGB")
            return np.asarray(im.convert("RGB"))
    except SimganError:
        raise
    except FileNotFoundError:
        raise SimganError(f"image file not found: {path}") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise SimganError(f"cannot read image {path}: its header claims a size too large to decode safely "
                          f"({' '.join(str(exc).split()[:6])} ...)") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError, MemoryError) as exc:
        raise SimganError(f"cannot read image {path}: corrupt or not an image ({exc})") from None


PNG_LEVEL = 1  # zlib level: docs/results/speed.md (higher levels cost time for a few % of size)


def encode_png(path: Path | str, image: np.ndarray) -> None:
    """Write an ``H x W x C`` uint8 (gray/RGB) or uint16 (gray) array as a PNG file (the fast
    codec of :mod:`simgan.datasets.png`, else Pillow; the same pixels either way)."""
    if image.ndim == 2:
        image = image[:, :, None]
    if image.dtype.byteorder not in "=|":  # e.g. big-endian uint16 from an HDF5 or .npy file
        image = image.astype(image.dtype.newbyteorder("="))
    if image.dtype in (np.uint8, np.uint16) and png.encode(path, image, PNG_LEVEL):
        return
    channels = image.shape[2]
    if image.dtype == np.uint8:
        if channels == 1:
            im = Image.fromarray(image[:, :, 0], mode="L")
        elif channels == 3:
            im = Image.fromarray(image, mode="RGB")
        else:
            raise SimganError(f"cannot write a {channels}-channel image as PNG: {path}")
    elif image.dtype == np.uint16:
        if channels != 1:
            raise SimganError(f"16-bit PNG output must be single-channel (depth): {path}")
        # Built from raw little-endian bytes: ``Image.fromarray(..., mode="I;16")`` is rejected
        # by Pillow >= 12 ("Invalid mode for data type"), and frombytes works on every version.
        plane = np.ascontiguousarray(image[:, :, 0], dtype="<u2")
        im = Image.frombytes("I;16", (plane.shape[1], plane.shape[0]), plane.tobytes())
    else:
        raise SimganError(f"unsupported pixel type {image.dtype} for {path}")
    im.save(path, format="PNG", compress_level=PNG_LEVEL)


def spec_of(image: np.ndarray) -> ImageSpec:
    h, w, c = image.shape
    return ImageSpec(h, w, c, 16 if image.dtype == np.uint16 else 8)


# ----------------------------------------------------------------------------------------------
# reading


def safe_relpath(root: Path, rel: str, where: str) -> str:
    if not isinstance(rel, str) or not rel:
        raise SimganError(f"{where}: \"file\" must be a non-empty string")
    p = Path(rel)
    if p.is_absolute() or ".." in p.parts:
        raise SimganError(f"{where}: \"file\" must be a path inside the dataset folder, got {rel!r}")
    return p.as_posix()


def list_image_files(root: Path) -> list[str]:
    """The images of an unlabelled folder: every image file below it (hidden ones excepted), as
    sorted paths relative to ``root``."""
    return sorted(
        p.relative_to(root).as_posix() for p in root.rglob("*")
        if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(root).parts))


def iter_labels(root: Path, labels_path: Path):
    """Check ``labels.jsonl`` line by line; yields ``(byte offset, "file:line", file, line)`` for
    each record: a JSON object whose ``"file"`` is a path inside ``root`` that exists. Blank lines
    are skipped; the caller checks for duplicates."""
    pos = 0
    for lineno, raw in enumerate(read_lines(labels_path), 1):
        start, pos = pos, pos + len(raw)
        line = raw.rstrip(b"\r\n")
        if not line.strip():
            continue
        where = f"{labels_path}:{lineno}"
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError):
            raise SimganError(f"{where}: line is not valid JSON") from None
        if not isinstance(obj, dict) or "file" not in obj:
            raise SimganError(f"{where}: each line must be a JSON object with a \"file\" key")
        rel = safe_relpath(root, obj["file"], where)
        try:
            exists = (root / rel).is_file()
        except (OSError, ValueError):
            exists = False
        if not exists:
            raise SimganError(f"{where}: names a missing file {rel!r}")
        yield start, where, rel, bytes(line)


def check_labels_file(labels_path: Path) -> bool:
    """True when ``labels_path`` is a readable file; False when absent; a one-line error when it
    is something else (a folder, a broken link)."""
    if not labels_path.exists() and not labels_path.is_symlink():
        return False
    if not labels_path.is_file():
        raise SimganError(f"{labels_path} is not a file (a folder or a broken link?); {LABELS_FILE} must be a "
                          f"file of JSON lines")
    return True


def read_lines(path: Path):
    """The raw lines of a file; any error reading it is one line naming the file."""
    try:
        with open(path, "rb") as fh:
            yield from fh
    except OSError as exc:
        raise SimganError(f"cannot read {path}: {exc.strerror or exc}") from None


class Dataset:
    """What every dataset offers: ``len``, ``read(i)`` (an ``H x W x C`` array), ``labels(i)``,
    ``spec`` and ``describe(i)`` (a name for messages). Readers of other formats (UnityEyes,
    MPIIGaze, HDF5, NPZ) subclass this; batch decoding and whole-set loading come for free.
    """

    labelled: bool = False
    _spec: "ImageSpec | None" = None

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def read(self, i: int) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def labels(self, i: int) -> dict:
        return {}

    def describe(self, i: int) -> str:
        return f"image #{i}"

    @property
    def spec(self) -> ImageSpec:
        """Shape of the first image (``read_many`` and ``load`` check that all images share it)."""
        if self._spec is None:
            self._spec = spec_of(self.read(0))
        return self._spec

    def read_many(self, indices: Sequence[int], *, threads: int = 4, check: bool = True) -> np.ndarray:
        """Decode images ``indices`` into one ``N x H x W x C`` array, checking they share a shape."""
        spec = self.spec
        out = np.empty((len(indices), spec.height, spec.width, spec.channels), dtype=spec.dtype)

        def work(k: int) -> None:
            img = self.read(indices[k])
            if check and spec_of(img) != spec:
                raise SimganError(
                    f"{self.describe(indices[k])} is {spec_of(img).describe()} but {self.describe(0)} is "
                    f"{spec.describe()}: all images of a dataset must share size and channels")
            out[k] = img

        if threads <= 1 or len(indices) < 64:
            for k in range(len(indices)):
                work(k)
        else:
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(work, range(len(indices)), chunksize=256))
        return out

    def load(self, *, threads: int = 4, cache: Path | None = None, progress: bool = False,
             memmap_threshold: int = 2 << 30) -> np.ndarray:
        """Decode the whole dataset once into an ``N x H x W x C`` array.

        Above ``memmap_threshold`` bytes the array is a memory-mapped ``.npy`` file at ``cache``
        (when given), so huge sets do not need to fit in memory.
        """
        spec = self.spec
        n = len(self)
        nbytes = n * spec.height * spec.width * spec.channels * spec.dtype.itemsize
        if cache is not None and nbytes > memmap_threshold:
            cache.parent.mkdir(parents=True, exist_ok=True)
            arr = np.lib.format.open_memmap(cache, mode="w+", dtype=spec.dtype,
                                            shape=(n, spec.height, spec.width, spec.channels))
        else:
            arr = np.empty((n, spec.height, spec.width, spec.channels), dtype=spec.dtype)
        chunk = 4096
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=n, desc="decode images", unit="img", leave=False)
        for start in range(0, n, chunk):
            idx = list(range(start, min(n, start + chunk)))
            arr[start:start + len(idx)] = self.read_many(idx, threads=threads)
            if bar is not None:
                bar.update(len(idx))
        if bar is not None:
            bar.close()
        return arr


class InterchangeFolder:
    """The opening checks of an interchange folder, written once for its two readers:
    :class:`ImageFolder` (every record in memory: training, evaluation) and
    :class:`simgan.datasets.stream.FolderIndex` (byte offsets only: refining huge sets).

    The folder must exist and be a folder; a ``labels.jsonl`` is checked line by line
    (:func:`iter_labels`) and indexed by :meth:`_index_labels`, an unlabelled folder's sorted
    image listing by :meth:`_index_files`; a folder with no images is refused.
    """

    def __init__(self, path: str | os.PathLike, *, need_labels: bool = False, what: str = "dataset"):
        self.root = Path(path)
        if not self.root.exists():
            raise SimganError(f"{what} folder not found: {self.root}")
        if not self.root.is_dir():
            raise SimganError(f"{what} must be a folder of images, got a file: {self.root}")
        self.labels_path = self.root / LABELS_FILE
        self.labelled = check_labels_file(self.labels_path)
        if self.labelled:
            self._index_labels()
        else:
            if need_labels:
                raise SimganError(f"{what} {self.root} has no {LABELS_FILE}; this command needs labelled images")
            self._index_files(list_image_files(self.root))
        if len(self) == 0:
            raise SimganError(f"{what} folder {self.root} holds no images")

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def _index_labels(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _index_files(self, files: list[str]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


class ImageFolder(InterchangeFolder, Dataset):
    """A dataset in the interchange format (see the module docstring), its records in memory.

    Opening checks the folder and ``labels.jsonl`` (:class:`InterchangeFolder`: every line a
    JSON object with a ``"file"`` that exists, none listed twice); images are decoded only when
    asked for.
    """

    records: list[Record]

    @classmethod
    def open(cls, path: str | os.PathLike, *, need_labels: bool = False, what: str = "dataset") -> "ImageFolder":
        return cls(path, need_labels=need_labels, what=what)

    def _index_labels(self) -> None:
        self.records = []
        seen: set[str] = set()
        for _, where, rel, line in iter_labels(self.root, self.labels_path):
            if rel in seen:
                raise SimganError(f"{where}: file {rel!r} is listed twice")
            seen.add(rel)
            self.records.append(Record(rel, line))

    def _index_files(self, files: list[str]) -> None:
        self.records = [Record(f) for f in files]

    # -- access ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.records)

    def path(self, i: int) -> Path:
        return self.root / self.records[i].file

    def read(self, i: int) -> np.ndarray:
        return decode_image(self.path(i))

    def labels(self, i: int) -> dict:
        return self.records[i].labels()

    def describe(self, i: int) -> str:
        return str(self.path(i))

# ----------------------------------------------------------------------------------------------
# writing


def json_line(obj: dict) -> bytes:
    """One ``labels.jsonl`` line (no newline) for a labels dict that includes ``"file"``."""
    return json.dumps(obj, separators=(", ", ": ")).encode("utf-8")


def _marked(lock_file: Path) -> bool:
    """Whether ``lock_file`` is simgan's marker. A process taking the lock rewrites it (truncate,
    then write), so an existing but empty or partial file is read again for a moment first."""
    from ..locks import read_lock_info

    for _ in range(20):
        if read_lock_info(lock_file) is not None:
            return True
        if not lock_file.exists():
            return False
        time.sleep(0.05)
    return False


class PartialDir:
    """The lifecycle of an ``OUT.partial`` work folder: create (or take over), lock, publish
    by one rename to ``OUT``, or remove.

    simgan never deletes what it did not create: a new ``OUT.partial`` is made with its lock file
    (:data:`simgan.locks.LOCK_FILE`, holding pid and host) already inside, and that file is the
    folder's ownership marker. An existing ``OUT.partial`` without it is the user's folder and is
    refused, never touched. One that has it is locked (a live owner: ``simgan: error: ... is in
    use by pid N``; a dead one: taken over, and said) and then reused (``resume``) or emptied.
    """

    def __init__(self, out: str | os.PathLike, *, resume: bool = False, echo=None):
        from ..locks import LOCK_FILE, Lock
        from ..paths import partial_of

        self.out = Path(out)
        self.path = partial_of(self.out)
        self.created = False
        self._made_parents: list[Path] = []
        if self.out.exists() or self.out.is_symlink():
            raise SimganError(f"output {self.out} already exists; choose a new folder or remove it")
        if self.path.exists() or self.path.is_symlink():
            if self.path.is_symlink() or not self.path.is_dir() or not _marked(self.path / LOCK_FILE):
                raise SimganError(f"{self.path} exists but simgan did not create it (no {LOCK_FILE} marker); simgan "
                                  f"never removes what it did not make: rename or remove it, or choose another --out")
            self.lock = Lock(self.path, echo=echo).acquire(create=False)
            if not resume:
                for child in self.path.iterdir():
                    if child.name == LOCK_FILE:
                        continue
                    if child.is_dir() and not child.is_symlink():
                        shutil.rmtree(child)
                    else:
                        child.unlink()
            return
        parent = self.path.parent
        missing = []
        while not parent.exists():
            missing.append(parent)
            parent = parent.parent
        for p in reversed(missing):
            try:
                p.mkdir()
            except FileExistsError:
                continue
            self._made_parents.append(p)
        # Made under a temporary name with the marker inside, then renamed: an OUT.partial never
        # exists without its marker.
        # a name of this process's own: job-array tasks on several hosts (or threads) may race here
        tmp = self.path.with_name(f".{self.path.name}.new{os.getpid()}-{secrets.token_hex(4)}")
        tmp.mkdir()
        lock = Lock(tmp, echo=echo).acquire(create=True)
        if self.path.exists() or self.path.is_symlink():
            lock.release()
            shutil.rmtree(tmp, ignore_errors=True)
            raise SimganError(f"{self.path} was created by another process at the same time; "
                              f"wait for it to finish or choose another --out")
        try:
            os.rename(tmp, self.path)
        except OSError as exc:
            lock.release()
            shutil.rmtree(tmp, ignore_errors=True)
            raise SimganError(f"cannot create {self.path}: {exc.strerror or exc}") from None
        lock.target, lock.path, lock.what = self.path, self.path / LOCK_FILE, str(self.path)
        self.lock = lock
        self.created = True

    def publish(self) -> Path:
        """Rename ``OUT.partial`` to ``OUT`` (its lock file removed first) and unlock."""
        fsync_dir(self.path)
        if self.out.exists() or self.out.is_symlink():
            raise SimganError(f"output {self.out} appeared while writing; the result is left in {self.path}")
        os.unlink(self.lock.path)
        os.rename(self.path, self.out)
        fsync_dir(self.out.parent)
        self.lock.release(remove=False)
        return self.out

    def remove(self) -> None:
        """Delete ``OUT.partial`` (it is ours: we hold its lock) and any parent folders this
        object created."""
        if self.lock.held:
            shutil.rmtree(self.path, ignore_errors=True)
            self.lock.release(remove=False)
        for p in reversed(self._made_parents):
            try:
                p.rmdir()
            except OSError:
                break

    def release(self) -> None:
        """Keep ``OUT.partial`` for a later run (its marker stays) and unlock it."""
        self.lock.release(remove=False)


class DatasetWriter:
    """Writes a dataset in the interchange format without ever exposing a half-written one.

    Everything goes to ``OUT.partial/`` first (see :class:`PartialDir`: marked as simgan's,
    locked); :meth:`finish` writes ``labels.jsonl`` and renames the folder to ``OUT`` in one
    step, so a folder named ``OUT`` is always complete. Used as a context manager, an exception
    inside the block removes ``OUT.partial`` (:meth:`abort`)::

        with DatasetWriter(out) as writer:
            writer.write_image("img/0.png", image)
            return writer.finish()

    ``resume=True`` makes a resumable writer (``simgan refine``): an existing ``OUT.partial`` of
    simgan's is reused as it is (:attr:`created` is False), and an exception keeps it for the
    next run (:meth:`release`), except bad input found by the call that created it
    (:class:`SimganError`), which leaves nothing behind. ``owner=False`` joins an ``OUT.partial``
    that another process of the same job holds (torchrun ranks > 0: rank 0 locks, writes
    ``labels.jsonl`` and publishes); such a writer only writes files into it.
    """

    def __init__(self, out: str | os.PathLike, *, resume: bool = False, echo=None, owner: bool = True):
        from ..paths import partial_of

        self.out = Path(out)
        self.resume = resume
        self._dir = PartialDir(self.out, resume=resume, echo=echo) if owner else None
        self.partial = self._dir.path if owner else partial_of(self.out)
        self._made_dirs: set[str] = set()
        self._labels = None  # open .labels.jsonl.part while labels are being added

    @property
    def created(self) -> bool:
        """True when this writer made ``OUT.partial`` (False: it continues an earlier one)."""
        return self._dir is not None and self._dir.created

    def image_path(self, rel: str) -> Path:
        parent = os.path.dirname(rel)
        if parent not in self._made_dirs:
            (self.partial / parent).mkdir(parents=True, exist_ok=True)
            self._made_dirs.add(parent)
        return self.partial / rel

    def write_image(self, rel: str, image: np.ndarray) -> None:
        encode_png(self.image_path(rel), image)

    def write_text(self, name: str, data: bytes) -> None:
        atomic_write_bytes(self.partial / name, data)

    def add_lines(self, lines: Iterable[bytes]) -> None:
        """Append ``labels.jsonl`` lines (no newline) as they are produced: huge sets never hold
        all their labels in memory."""
        if self._labels is None:
            self._labels = open(self.partial / f".{LABELS_FILE}.part", "wb")
        for line in lines:
            self._labels.write(line + b"\n")

    def finish(self, lines: Iterable[bytes] | None = None) -> Path:
        """Write ``labels.jsonl`` (the lines added so far and ``lines``; none at all: an
        unlabelled set, no file) and publish the folder."""
        if lines is not None:
            self.add_lines(lines)
        if self._labels is not None:
            self._labels.flush()
            os.fsync(self._labels.fileno())
            self._labels.close()
            self._labels = None
            os.replace(self.partial / f".{LABELS_FILE}.part", self.partial / LABELS_FILE)
        return self._dir.publish()

    def _close_labels(self) -> None:
        if self._labels is not None:
            self._labels.close()
            self._labels = None

    def abort(self) -> None:
        """Remove ``OUT.partial`` (and any parent folders made for it)."""
        self._close_labels()
        if self._dir is not None:
            self._dir.remove()

    def release(self) -> None:
        """Keep ``OUT.partial`` for a later run (:meth:`PartialDir.release`)."""
        self._close_labels()
        if self._dir is not None and self._dir.lock.held:
            self._dir.release()

    def __enter__(self) -> "DatasetWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None or self._dir is None or not self._dir.lock.held:
            return  # finished (published), or not ours to clean up
        if self.resume and not (self.created and issubclass(exc_type, SimganError)):
            self.release()
        else:
            self.abort()


def write_dataset(out: str | os.PathLike, images: np.ndarray, labels: Sequence[dict] | None = None,
                  *, pattern: str = "img/{:06d}.png") -> Path:
    """Write ``N x H x W x C`` images (and optional labels dicts) as a new interchange folder."""
    with DatasetWriter(out) as writer:
        lines = []
        for i, image in enumerate(images):
            rel = pattern.format(i)
            writer.write_image(rel, image)
            if labels is not None:
                lines.append(json_line({"file": rel, **labels[i]}))
        return writer.finish(lines if labels is not None else None)
