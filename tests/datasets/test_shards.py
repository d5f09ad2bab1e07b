"""The array format: .npy shards + labels.jsonl, read with plain numpy, written atomically, and
converted to and from the PNG folder with labels byte for byte and pixels unchanged."""

import json

import numpy as np
import pytest

from simgan.datasets import open_dataset, write_dataset
from simgan.datasets.conversion import convert
from simgan.datasets.shards import ShardImages, ShardWriter, write_shards
from simgan.errors import SimganError


def images(n=10, h=5, w=7, c=1, dtype=np.uint8, seed=0):
    return np.random.default_rng(seed).integers(0, np.iinfo(dtype).max, (n, h, w, c), dtype=dtype)


def test_plain_numpy_reads_what_the_docs_say(tmp_path):
    x = images(10, dtype=np.uint16)
    out = write_shards(tmp_path / "a.shards", x, [{"file": f"img/{i}.png", "v": i} for i in range(10)], shard_size=4)
    m = json.loads((out / "shards.json").read_text())
    assert m == {"format": "simgan-shards", "version": 1, "count": 10, "shard_size": 4, "height": 5, "width": 7,
                 "channels": 1, "dtype": "uint16"}
    parts = [np.load(out / f"images-{k:06d}.npy", mmap_mode="r") for k in range(3)]
    assert [p.shape[0] for p in parts] == [4, 4, 2]
    assert np.array_equal(np.concatenate(parts), x)
    lines = (out / "labels.jsonl").read_text().splitlines()
    assert json.loads(lines[7]) == {"file": "img/7.png", "v": 7}


def test_reader_by_position_and_in_batches(tmp_path):
    x = images(10)
    ds = open_dataset(write_shards(tmp_path / "a.shards", x, shard_size=3))
    assert isinstance(ds, ShardImages) and not ds.labelled and len(ds) == 10
    assert ds.spec.describe() == "7x5 8-bit gray"
    assert np.array_equal(ds.load(), x)
    assert np.array_equal(ds.read_many([9, 0, 4, 5]), x[[9, 0, 4, 5]])
    assert np.array_equal(ds.read_many([3, 4, 5]), x[3:6])  # one slice of one shard
    assert np.array_equal(ds.read(7), x[7])


@pytest.mark.parametrize("damage, match", [
    (lambda d: (d / "images-000001.npy").write_bytes((d / "images-000001.npy").read_bytes()[:100]), "truncated"),
    (lambda d: (d / "images-000002.npy").unlink(), "missing"),
    (lambda d: np.save(d / "images-000000.npy", np.zeros((4, 5, 7, 3), np.uint8)), "manifest says"),
    (lambda d: np.save(d / "images-000000.npy", np.zeros((4, 5, 7, 1), np.uint16)), "manifest says"),
    (lambda d: (d / "labels.jsonl").write_text("{}\n"), "1 lines for 10 images"),
    (lambda d: (d / "shards.json").write_text("{"), "shards.json"),
])
def test_bad_shards_name_the_file(tmp_path, damage, match):
    d = write_shards(tmp_path / "a.shards", images(10), [{"v": i} for i in range(10)], shard_size=4)
    damage(d)
    with pytest.raises(SimganError, match=match):
        open_dataset(d)


def test_a_killed_writer_leaves_whole_shards_only(tmp_path):
    x = images(10)
    w = ShardWriter(tmp_path / "a.shards", open_dataset(write_shards(tmp_path / "src.shards", x)).spec, 10, 4,
                    resume=True)
    w.write_shard(0, x[:4])
    w.release()  # a kill after one shard: OUT.partial kept, no OUT
    assert not (tmp_path / "a.shards").exists()
    w = ShardWriter(tmp_path / "a.shards", w.spec, 10, 4, resume=True)
    assert w.done(0) and not w.done(1)
    with pytest.raises(SimganError, match="shard 1 was never written"):
        w.write_manifest()
    w.write_shard(1, x[4:8])
    w.write_shard(2, x[8:])
    assert np.array_equal(open_dataset(w.finish()).load(), x)


def test_convert_round_trip_is_byte_and_pixel_identical(tmp_path):
    x = images(9, c=3)
    recs = [{"gaze": [0.1 * i, 0.2, -1.0], "name": f"n{i}"} for i in range(9)]
    folder = write_dataset(tmp_path / "png", x, recs)
    arr = convert(folder, tmp_path / "a.shards", shard_size=4)
    assert (arr / "labels.jsonl").read_bytes() == (folder / "labels.jsonl").read_bytes()
    back = convert(arr, tmp_path / "back")
    assert (back / "labels.jsonl").read_bytes() == (folder / "labels.jsonl").read_bytes()
    assert sorted(p.name for p in (back / "img").iterdir()) == sorted(p.name for p in (folder / "img").iterdir())
    assert np.array_equal(open_dataset(back).load(), x)
    again = convert(folder, tmp_path / "b", to="shards")  # --to shards, whatever the name
    assert isinstance(open_dataset(again), ShardImages)


def test_convert_refuses_a_file_outside_the_folder(tmp_path):
    bad = write_shards(tmp_path / "a.shards", images(2), [{"file": "../x.png"}, {"file": "y.png"}])
    with pytest.raises(SimganError, match="inside the dataset folder"):
        convert(bad, tmp_path / "out")
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.partial").exists()


def test_simulators_write_the_array_format(tmp_path):
    from simgan.simulators.eyes import simulate_eyes

    png = simulate_eyes(tmp_path / "png", 20, seed=3, progress=False)
    arr = simulate_eyes(tmp_path / "eyes.shards", 20, seed=3, progress=False)
    assert (arr / "labels.jsonl").read_bytes() == (png / "labels.jsonl").read_bytes()
    assert np.array_equal(open_dataset(arr).load(), open_dataset(png).load())


def test_label_lines_in_spans_and_rows_read_in_place(tmp_path):
    import os

    recs = [{"v": i} for i in range(10)]
    x = images(10, c=3, dtype=np.uint16)
    ds = open_dataset(write_shards(tmp_path / "a.shards", x, recs, shard_size=3))
    assert [json.loads(line) for line in ds.label_lines(3, 7)] == recs[3:7]
    assert ds.label_lines(8, 20) == [ds.label_line(8), ds.label_line(9)]
    fds = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
    # runs inside a shard, across shards, backwards, repeated, and nothing at all
    for idx in ([0, 1, 2, 3, 4], [2, 3], [9, 0, 5, 5, 6, 7, 8], [], [4]):
        assert np.array_equal(ds.read_many(idx), x[idx])
    assert np.array_equal(ds.read(7), x[7]) and np.array_equal(ds.load(), x)
    if fds is not None:
        assert len(os.listdir("/proc/self/fd")) == fds  # no file kept open (nor mapped) between reads
    with pytest.raises(IndexError):
        ds.read_many([10])


def test_label_index_every_few_lines(tmp_path, monkeypatch):
    import simgan.datasets.shards as shards

    monkeypatch.setattr(shards, "LABEL_STRIDE", 3)
    recs = [{"v": i, "pad": "x" * (i % 4)} for i in range(11)]
    path = write_shards(tmp_path / "a.shards", images(11), recs, shard_size=4)
    ds = ShardImages(path)
    last = (path / "labels.jsonl").read_bytes().splitlines()[-1]
    assert [json.loads(ds.label_line(i)) for i in range(11)] == recs
    for start in range(11):
        for stop in range(start, 14):
            assert [json.loads(x) for x in ds.label_lines(start, stop)] == recs[start:stop]
    # a last line without its newline, and CRLF line ends, read the same
    labels = path / "labels.jsonl"
    labels.write_bytes(labels.read_bytes().replace(b"\n", b"\r\n").rstrip(b"\r\n"))
    again = ShardImages(path)
    assert [again.labels(i) for i in range(11)] == recs and list(again.iter_label_lines())[-1] == last
    labels.write_bytes(labels.read_bytes() + b"\r\n{}\n")
    with pytest.raises(SimganError, match="12 lines for 11 images"):
        ShardImages(path)
