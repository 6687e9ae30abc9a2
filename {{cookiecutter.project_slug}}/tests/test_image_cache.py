"""data.cache: the same bytes as decoding every epoch, a stale cache never read, files built atomically, and
make check still looking at every original image."""
import os
import pickle

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from helpers import like_demo, mod, run_cli

# problem-agnostic (the head and loss are the shared code's): the module runs where the slow tests run, in the one
# image project of the template's CI that runs them
pytestmark = pytest.mark.slow

config, image, cache = mod("core.config"), mod("modality.image"), mod("modality.image_cache")
# augmentation on, so the test also shows the augmented pixels (and their RNG) are unchanged by the cache
AUG = ["aug.train=[{name: Affine, p: 0.8, translate_percent: 0.1, scale: [0.8, 1.2]}, {name: RandomBrightnessContrast, p: 0.5}]"]


def run(exp, tiny, *args):
    like_demo(exp)
    assert run_cli("train", "--exp", exp, *tiny, *AUG, "train.epochs=2", "train.folds=[0]", *args) == 0


def weights(workdir, exp):
    return torch.load(workdir / "outputs" / exp / "fold0" / "best.pt", map_location="cpu", weights_only=False)


@pytest.mark.parametrize("mode, workers", [("ram", 0), ("disk", 2)])
def test_a_cached_run_is_byte_identical_to_decoding_every_epoch(tiny, workdir, demo_dir, monkeypatch, mode, workers):
    run("plain", tiny, f"train.num_workers={workers}")
    reads = []
    real = image.read_image
    monkeypatch.setattr(image, "read_image", lambda p: reads.append(p) or real(p))
    run("cached", tiny, f"train.num_workers={workers}", f"data.cache={mode}")
    # every train image decoded once in this process (not twice per epoch)
    assert sorted(reads) == sorted(str(demo_dir / p) for p in pd.read_csv(demo_dir / "train.csv")["image"])
    out = workdir / "outputs"
    assert (out / "plain" / "fold0" / "oof.csv").read_bytes() == (out / "cached" / "fold0" / "oof.csv").read_bytes()
    a, b = weights(workdir, "plain"), weights(workdir, "cached")
    state = lambda w: w.get("model", w)  # noqa: E731
    assert all(torch.equal(v, state(b)[k]) for k, v in state(a).items() if torch.is_tensor(v))
    npys = list((workdir / "cache").glob("*.npy"))
    assert (len(npys) == 1) == (mode == "disk")  # the folds share the store of all train rows: one file


def images_of(data, n=6):
    df = pd.read_csv(data / "train.csv")
    return [str(data / p) for p in df["image"].iloc[:n]]


def test_the_cache_holds_the_pipelines_resized_pixels_and_pickles_without_its_memmap(data_copy, tmp_path):
    paths = images_of(data_copy)
    store = cache.ImageCache("disk", (20, 24), tmp_path / "c", image.read_image)
    decoded = store.decoded(paths[::-1])
    import albumentations as A
    for i, p in enumerate(paths[::-1]):
        assert np.array_equal(decoded[i], A.Resize(20, 24)(image=image.read_image(p))["image"])
    clone = pickle.loads(pickle.dumps(decoded))  # what a spawned DataLoader worker receives
    assert all(s._array is None for s in clone.stores) and np.array_equal(clone[0], decoded[0])
    assert len(pickle.dumps(decoded)) < 20 * 24 * 3  # the pixels stay in the file


def test_a_touched_image_or_another_size_gets_a_new_key_so_a_stale_cache_is_never_read(data_copy, tmp_path,
                                                                                      monkeypatch):
    paths = images_of(data_copy)
    folder = tmp_path / "c"
    first = cache.ImageCache("disk", (16, 16), folder, image.read_image).decoded(paths)[0].copy()
    # the same request in a new process: read from the file, nothing decoded
    monkeypatch.setattr(cache, "decode_all", lambda *a: pytest.fail("decoded although the cache is fresh"))
    again = cache.ImageCache("disk", (16, 16), folder, image.read_image).decoded(paths)
    assert np.array_equal(again[0], first)
    monkeypatch.undo()
    Image.fromarray(np.full((28, 28), 255, dtype=np.uint8)).save(paths[0])  # the first image changes
    st = os.stat(paths[0])
    os.utime(paths[0], ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    fresh = cache.ImageCache("disk", (16, 16), folder, image.read_image).decoded(paths)
    assert (fresh[0] == 255).all() and not np.array_equal(fresh[0], first)
    cache.ImageCache("disk", (20, 20), folder, image.read_image).decoded(paths)
    assert len(list(folder.glob("*.npy"))) == 3


def test_a_failed_build_leaves_no_file_and_a_fold_subset_reuses_the_store(data_copy, tmp_path):
    paths = images_of(data_copy)
    folder = tmp_path / "c"

    def broken(p):
        if p == paths[3]:
            raise OSError("disk full")
        return image.read_image(p)
    with pytest.raises(OSError):
        cache.ImageCache("disk", (16, 16), folder, broken).decoded(paths)
    assert not folder.exists() or list(folder.iterdir()) == []
    c = cache.ImageCache("ram", (16, 16), folder, image.read_image)
    c.decoded(paths)
    sub = c.decoded(paths[2:4] + [str(data_copy / pd.read_csv(data_copy / "test.csv")["image"].iloc[0])])
    assert len(c.stores) == 2 and list(sub.which) == [0, 0, 1]  # only the new (test) image was decoded


def test_make_check_still_decodes_the_original_files_when_a_cache_exists(data_copy, tiny, workdir, capsys):
    like_demo("c", "c2")
    args = [*tiny, f"data.dir={data_copy}", "data.cache=disk", "train.epochs=1", "train.folds=[0]"]
    assert run_cli("train", "--exp", "c", *args) == 0
    victim = sorted((data_copy / "images").glob("*.png"))[-1]
    victim.write_bytes(victim.read_bytes()[:60])
    assert run_cli("train", "--exp", "c2", *args) == 2
    assert victim.name in capsys.readouterr().err


def test_data_cache_is_an_image_key_with_three_choices(workdir):
    with pytest.raises(mod("core.errors").ConfigError, match="data.cache"):
        config.load("demo", ["data.cache=gpu"])
