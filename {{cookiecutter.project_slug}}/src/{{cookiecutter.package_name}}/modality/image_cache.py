"""data.cache (image projects): every image decoded and resized once, then augmented from memory.

    none  (default) the DataLoader workers decode every file again at every epoch: fine for small PNGs,
          the bottleneck for large JPEGs (a 512 px JPEG takes milliseconds to decode; a 96 px step less).
    ram   decoded once per process into uint8 arrays (rows x H x W x 3): N * H * W * 3 bytes of memory
          (100k images at 96 px: 2.8 GB) and the decode again in every process (make train, predict, ...).
    disk  decoded once into paths.cache/<key>.npy and memory-mapped by every process and worker (the OS
          page cache keeps it in memory); later runs, make predict and make tune read it without decoding.

The key hashes the sorted image paths with their sizes and modification times, the size after resize and
the OpenCV / albumentations versions: other data, another data.image_size or a touched image file give a
new key, so a stale cache is never read (old files stay until you delete the folder). The pixels are the
uncached pipeline's (the same decode and the same Resize; the transform's own Resize of an image already at
its size is a copy), so a run is byte-identical with and without the cache. make check
(data.check_inputs) still decodes every original file.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import albumentations as A
import cv2
import numpy as np

FORMAT = 1  # bump when the stored pixels change meaning


def fingerprint(paths: list[str], hw: tuple[int, int]) -> str:
    h = hashlib.sha256(json.dumps([FORMAT, cv2.__version__, A.__version__, list(hw)]).encode())
    for p in sorted(paths):
        st = os.stat(p)
        h.update(f"{p}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:24]


def decode_all(paths: list[str], hw: tuple[int, int], read) -> np.ndarray:
    """paths decoded by `read` and resized to hw like the transform's A.Resize, in threads (OpenCV releases
    the GIL), into one uint8 array (N, H, W, 3)."""
    out = np.empty((len(paths), *hw, 3), dtype=np.uint8)

    def one(i: int) -> None:
        out[i] = A.Resize(*hw)(image=read(paths[i]))["image"]  # one transform per call: no shared state

    with ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
        list(pool.map(one, range(len(paths))))
    return out


def write_npy(array: np.ndarray, file: Path) -> None:
    file.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=file.parent, prefix=f".{file.stem}.", suffix=".tmp")
    os.close(fd)
    try:
        with open(tmp, "wb") as f:  # a file object: np.save would append .npy to a name
            np.save(f, array, allow_pickle=False)
        os.replace(tmp, file)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


class Store:
    """Decoded images of `paths` (sorted), in memory or in an .npy file memory-mapped on first use; the
    memmap is reopened in each DataLoader worker rather than pickled."""

    def __init__(self, paths: list[str], array: np.ndarray | None = None, file: Path | None = None):
        self.paths, self._array, self.file = paths, array, file
        self.index = {p: i for i, p in enumerate(paths)}

    def rows(self) -> np.ndarray:
        if self._array is None:
            self._array = np.load(self.file, mmap_mode="r")
        return self._array

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        if self.file is not None:
            state["_array"] = None
        return state


class Decoded:
    """Item i of a dataset: row rows[i] of store stores[which[i]] (uint8 H x W x 3)."""

    def __init__(self, stores: list[Store], which: np.ndarray, rows: np.ndarray):
        self.stores, self.which, self.rows = stores, which, rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> np.ndarray:
        return np.array(self.stores[self.which[i]].rows()[self.rows[i]])


class ImageCache:
    """The stores this process has opened; a request is served from them and only its missing images are
    decoded (a fold's rows come from the store of all train rows, pseudo-labelled test rows from one more)."""

    def __init__(self, mode: str, hw: tuple[int, int], folder: Path, read):
        self.mode, self.hw, self.folder, self.read = mode, hw, Path(folder), read
        self.stores: list[Store] = []
        self.where: dict[str, tuple[int, int]] = {}  # path -> (store, row)

    def open(self, paths: list[str]) -> Store:
        paths = sorted(set(paths))
        if self.mode == "ram":
            return Store(paths, array=decode_all(paths, self.hw, self.read))
        file = self.folder / f"{fingerprint(paths, self.hw)}.npy"
        if not file.is_file():
            write_npy(decode_all(paths, self.hw, self.read), file)
        return Store(paths, file=file)

    def decoded(self, paths: list[str]) -> Decoded:
        missing = [p for p in dict.fromkeys(paths) if p not in self.where]
        if missing:
            store = self.open(missing)
            self.where.update((p, (len(self.stores), r)) for p, r in store.index.items())
            self.stores.append(store)
        pairs = np.array([self.where[p] for p in paths], dtype=np.int64).reshape(-1, 2)
        return Decoded(self.stores, pairs[:, 0], pairs[:, 1])
