"""``simgan convert``: any supported input format -> the interchange format (PNG folder) or the
array format (:mod:`simgan.datasets.shards`), and back.

The work is done by the readers (:mod:`simgan.datasets.formats`); this module streams their
images and labels into a :class:`~simgan.datasets.folder.DatasetWriter` or
:class:`~simgan.datasets.shards.ShardWriter`, so a failure half-way leaves no folder named ``out``.
Between a PNG folder and the array format the ``labels.jsonl`` lines are copied byte for byte and
the images pixel for pixel: the array format keeps each image's ``"file"``, and converting back
writes each image there.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tqdm import tqdm

from ..errors import SimganError
from .folder import DatasetWriter, ImageFolder, safe_relpath, encode_png, json_line
from .formats import FORMATS, open_format, sniff
from .shards import SHARD_IMAGES, SUFFIX, ShardImages, ShardWriter

OUTPUTS = ("png", "shards")


def output_format(out: str | os.PathLike, to: str = "auto") -> str:
    """``png`` (a folder of PNG files) or ``shards`` (the array format): ``to``, or for ``auto``
    the path's suffix (``OUT.shards``)."""
    if to == "auto":
        return "shards" if Path(out).suffix.lower() == SUFFIX else "png"
    if to not in OUTPUTS:
        raise SimganError(f"unknown output format {to!r}; choose one of auto, {', '.join(OUTPUTS)}")
    return to

#: Images decoded and written per step.
CHUNK = 512


def convert(src: str | os.PathLike, out: str | os.PathLike, *, format: str = "auto",
            size: tuple[int, int] | None | str = "default", gray: bool | None = None,
            limit: int | None = None, crop_scale: float = 1.5, landmarks: bool = True,
            eyes: str = "both", flip: str = "right", images_key: str | None = None,
            threads: int = 4, progress: bool = False, nyu_kind: str = "real", cameras=None,
            to: str = "auto", shard_size: int = SHARD_IMAGES) -> Path:
    """Convert ``src`` (UnityEyes, MPIIGaze, NYU, HDF5, NPZ, the array format, or a PNG folder when
    writing the array format) into a new PNG folder or array-format folder ``out`` (``to``: png,
    shards, or auto from ``out``'s suffix).

    ``format="auto"`` recognises the input (see :func:`~simgan.datasets.formats.sniff`).
    ``size``: ``(width, height)``; ``"default"`` is 55x35 for the gaze formats and the stored size
    for arrays; ``None`` keeps the stored size. ``gray``: ``True`` one channel, ``False`` keep the
    channels, ``None`` the format's default (gray for UnityEyes/MPIIGaze). ``limit`` converts only
    the first ``limit`` images. The other options go to the readers. Images are written as
    ``img/000000.png``, ...; labels (when the input has any) as ``labels.jsonl``. Returns ``out``.
    """
    from ..paths import check_no_overlap

    out = Path(out)
    check_no_overlap({"SRC": src}, {"--out": out})
    if out.exists():
        raise SimganError(f"output {out} already exists; choose a new folder or remove it")
    if limit is not None and limit < 1:
        raise SimganError(f"limit must be at least 1, got {limit}")
    to = output_format(out, to)
    if shard_size < 1:
        raise SimganError(f"--shard-size must be >= 1, got {shard_size}")
    if format == "auto":
        fmt = sniff(src)
        if fmt is None and to == "shards" and Path(src).is_dir():
            fmt = "png"
        if fmt is None:
            if not Path(src).exists():
                raise SimganError(f"input not found: {src}")
            raise SimganError(f"cannot tell the format of {src}: expected a UnityEyes folder (N.jpg + N.json), "
                              "MPIIGaze dayNN.mat files, an NYU hand pose folder (joint_data.mat), "
                              "an .h5/.hdf5 file or an .npz archive; "
                              "name one with --format")
    elif format in FORMATS:
        fmt = format
    else:
        raise SimganError(f"unknown format {format!r}; choose one of auto, {', '.join(FORMATS)}")
    if fmt == "png":
        ds = ImageFolder.open(src, what="input")
    else:
        ds = open_format(src, fmt, size=size, gray=gray, crop_scale=crop_scale, landmarks=landmarks, eyes=eyes,
                         flip=flip, images_key=images_key, what="input", nyu_kind=nyu_kind, cameras=cameras)
    spec = ds.spec
    n = len(ds) if limit is None else min(limit, len(ds))
    if to == "shards":
        return _to_shards(ds, out, n, fmt, shard_size, threads, progress)
    if spec.bit_depth == 16 and spec.channels != 1:
        raise SimganError(f"{src} holds 16-bit {spec.channels}-channel images, which PNG output keeps only "
                          "as gray: add --gray")
    digits = max(6, len(str(n - 1)))
    names = [f"img/{i:0{digits}d}.png" for i in range(n)]
    verbatim = isinstance(ds, ShardImages) and ds.labelled
    if verbatim:  # back to the PNG folder the array format came from: each image at its "file"
        names = _shard_names(ds, n, names)

    with DatasetWriter(out) as writer, \
            tqdm(total=n, desc=f"convert {fmt}", unit="img", leave=False, disable=None if progress else True) as bar, \
            ThreadPoolExecutor(max(1, threads)) as pool:
        for start in range(0, n, CHUNK):
            idx = list(range(start, min(n, start + CHUNK)))
            batch = ds.read_many(idx, threads=threads)
            paths = [writer.image_path(names[i]) for i in idx]
            list(pool.map(encode_png, paths, batch))
            if verbatim:
                writer.add_lines(ds.label_line(i) if "file" in ds.labels(i) else
                                 json_line({"file": names[i], **ds.labels(i)}) for i in idx)
            elif ds.labelled:
                writer.add_lines(json_line({"file": names[i], **ds.labels(i)}) for i in idx)
            bar.update(len(idx))
        return writer.finish()


def _shard_names(ds: ShardImages, n: int, default: list[str]) -> list[str]:
    """The PNG path of each image of an array-format set: its labels' ``"file"`` (checked: inside
    the folder, a .png, no two alike), else ``img/NNNNNN.png``."""
    names, seen = [], set()
    for i in range(n):
        rec = ds.labels(i)
        name = default[i] if "file" not in rec else safe_relpath(ds.root, rec["file"], f"{ds.labels_path} line {i + 1}")
        if not name.lower().endswith(".png"):
            raise SimganError(f"{ds.labels_path} line {i + 1}: \"file\" {name!r} is not a .png; a PNG folder keeps "
                              "images as .png files")
        if name.lower() in seen:
            raise SimganError(f"{ds.labels_path} line {i + 1}: file {name!r} is listed twice")
        seen.add(name.lower())
        names.append(name)
    return names


def _to_shards(ds, out: Path, n: int, fmt: str, shard_size: int, threads: int, progress: bool) -> Path:
    """Any readable set -> the array format; the labels lines of a PNG folder or another array-format
    set byte for byte, those of other formats as the PNG conversion writes them."""
    digits = max(6, len(str(n - 1)))
    with ShardWriter(out, ds.spec, n, shard_size) as writer, \
            tqdm(total=n, desc=f"convert {fmt}", unit="img", leave=False, disable=None if progress else True) as bar:
        for k in range(writer.n_shards):
            idx = list(range(k * shard_size, k * shard_size + writer.rows(k)))
            writer.write_shard(k, ds.read_many(idx, threads=threads))
            bar.update(len(idx))

        def lines():
            for i in range(n):
                if isinstance(ds, ImageFolder):
                    yield ds.records[i].line
                elif isinstance(ds, ShardImages):
                    yield ds.label_line(i)
                else:
                    yield json_line({"file": f"img/{i:0{digits}d}.png", **ds.labels(i)})

        return writer.finish(lines() if ds.labelled else None)
