"""Image modality: timm backbone, albumentations transforms from config, decoding in DataLoader workers.

Images are read with OpenCV as 3-channel RGB (grayscale is replicated, alpha dropped), resized to
data.image_size (a square side, or [height, width] for non-square inputs), augmented by aug.train /
aug.preset (training only; augment.py), normalised with the backbone's own mean/std.
model.weights points at a local checkpoint file for offline notebooks (no hub access needed).
Test-time views (tta.views, see tta.py) are tensor ops on the normalised batch, on the device; those that
swap height and width (SQUARE_ONLY) need a square data.image_size.
"""
from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import pandas as pd
import timm
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler

from ..core.errors import ConfigError, DataError
from ..core.rundir import cache_dir
from ..core.schema import Config, image_hw
from .augment import aug_entries, build_augs
from .image_cache import Decoded, ImageCache

cv2.setNumThreads(0)  # DataLoader workers are the parallelism; OpenCV threads would oversubscribe


def read_image(path: str) -> np.ndarray:
    img = cv2.imread(path, cv2.IMREAD_COLOR)
    if img is None:
        raise DataError(f"image {path} could not be decoded")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _broken(path: Path) -> str | None:
    if not path.is_file():
        return "missing"
    if path.stat().st_size == 0:
        return "zero bytes"
    try:
        with Image.open(path) as im:
            im.load()  # a full decode: verify() misses truncated files
    except Exception as e:  # noqa: BLE001 - any decoder failure means the file is unusable
        return f"does not decode ({type(e).__name__})"
    if not cv2.haveImageReader(str(path)):  # PIL reads formats (TGA, ICO, PCX) that read_image's OpenCV cannot
        return "is in a format OpenCV cannot read (convert it to PNG or JPEG)"
    return None


class SeededSampler(Sampler):
    """The training order and each item's augmentation seed: per epoch a permutation of the rows and a seed
    per row, both drawn from `generator` in the main process as the epoch starts; items are (row, seed).
    Workers then need no RNG state of their own, so they live across epochs (persistent_workers: no
    start-up per epoch), the augmentations do not depend on train.num_workers, and a resumed epoch, drawn
    from the generator state saved with its resume point, replays them exactly. Under DDP Accelerate
    synchronises `generator` across processes before each epoch."""

    def __init__(self, n: int, generator: torch.Generator | None):
        self.n, self.generator = n, generator

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        order = torch.randperm(self.n, generator=self.generator)
        seeds = torch.randint(0, 2**31 - 1, (self.n,), generator=self.generator)
        return iter(zip(order.tolist(), seeds.tolist()))


class ImageDataset(Dataset):
    """images: the decoded, resized images of `paths` (data.cache), or None to decode the files.
    An item is a row index, or (row, seed) from SeededSampler for a training item: albumentations' Compose
    has its own RNG, seeded from the OS unless told otherwise, so the seed fixes its augmentations."""

    def __init__(self, paths: list[str], targets: np.ndarray | None, transform: A.Compose,
                 weights: np.ndarray | None = None, images: Decoded | None = None):
        self.paths, self.targets, self.transform, self.weights = paths, targets, transform, weights
        self.images = images

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        i = key
        if isinstance(key, tuple):
            i, seed = key
            self.transform.set_random_seed(seed)
        raw = read_image(self.paths[i]) if self.images is None else self.images[i]
        image = self.transform(image=raw)["image"]
        item = {"image": torch.from_numpy(image.transpose(2, 0, 1).copy())}
        if self.targets is not None:
            item["target"] = torch.as_tensor(self.targets[i])
        if self.weights is not None:
            item["weight"] = torch.as_tensor(self.weights[i], dtype=torch.float32)
        return item


# Test-time views of a (B, C, H, W) batch. Flips and rotations keep the label only where the data has
# that symmetry (hflip: photos, clothing; vflip / rotations: satellite, microscopy; none: digits, text).
VIEW_OPS = {
    "identity": lambda x: x,
    "hflip": lambda x: x.flip(-1),
    "vflip": lambda x: x.flip(-2),
    "transpose": lambda x: x.transpose(-1, -2),
    "rot90": lambda x: x.rot90(1, (-2, -1)),
    "rot180": lambda x: x.rot90(2, (-2, -1)),
    "rot270": lambda x: x.rot90(3, (-2, -1)),
}
SQUARE_ONLY = ("transpose", "rot90", "rot270")  # swap height and width: a non-square batch changes shape
SCALE = re.compile(r"scale(\d+(?:\.\d*)?|\.\d+)$")


def scale_of(view: str) -> float | None:
    m = SCALE.match(view)
    return float(m.group(1)) if m else None


class ImageViews:
    """Runs the views of a batch: views of one size are concatenated along the batch dimension and go
    through the model in one forward (scale<f> views of another size get a forward of their own).
    Memory grows with the number of views: lower train.eval_batch_size, or tta.batched=false for one
    pass over the data per view. Transposes and quarter turns keep the shape of square images only
    (tta.check_views refuses them for a non-square data.image_size); scale<f> resizes both sides by f."""

    def __init__(self, views: list[str]):
        self.views = list(views)

    def __call__(self, model, batch: dict) -> torch.Tensor:
        x = batch["image"]
        h, w = x.shape[-2:]
        groups: dict[tuple[int, int], list[int]] = {}
        for i, v in enumerate(self.views):
            f = scale_of(v)
            groups.setdefault((h, w) if f is None else (max(1, round(h * f)), max(1, round(w * f))), []).append(i)
        out: list[torch.Tensor | None] = [None] * len(self.views)
        for size, members in groups.items():
            xs = x if size == (h, w) else F.interpolate(x, size=size, mode="bilinear", align_corners=False,
                                                        antialias=size[0] < h)
            stacked = torch.cat([self.op(self.views[i])(xs) for i in members])
            logits = model({"image": stacked}).unflatten(0, (len(members), len(x)))
            for j, i in enumerate(members):
                out[i] = logits[j]
        return torch.stack(out, 1)  # (B, V, C)

    @staticmethod
    def op(view: str):
        return VIEW_OPS["identity"] if scale_of(view) is not None else VIEW_OPS[view]


class ImageModel(torch.nn.Module):
    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = net

    def forward(self, batch: dict) -> torch.Tensor:
        return self.net(batch["image"])


class Modality:
    VIEWS = (*VIEW_OPS, "scale<f> (e.g. scale1.15: resized to round(image_size x f))")
    SQUARE_ONLY = SQUARE_ONLY

    def __init__(self, cfg: Config, assets_dir: Path | None = None):
        self.cfg = cfg
        self.root = Path(cfg.data.dir)
        self.augs = build_augs(aug_entries(cfg.aug, cfg.data.image_size))
        pcfg = timm.get_pretrained_cfg(cfg.model.name)
        self.mean = tuple(getattr(pcfg, "mean", None) or timm.data.IMAGENET_DEFAULT_MEAN)
        self.std = tuple(getattr(pcfg, "std", None) or timm.data.IMAGENET_DEFAULT_STD)
        hw = image_hw(cfg.data.image_size)
        self.cache = None if cfg.data.cache == "none" else ImageCache(cfg.data.cache, hw, cache_dir(cfg), read_image)

    def check_inputs(self, df: pd.DataFrame, file: str) -> None:
        col, id_col = self.cfg.data.image_col, self.cfg.data.id_col
        paths = [self.root / str(p) for p in df[col]]
        with ThreadPoolExecutor(8) as pool:
            problems = list(pool.map(_broken, paths))
        bad = [(i, p) for i, p in enumerate(problems) if p]
        if bad:
            shown = "; ".join(f"line {i + 2} (id={df[id_col].iloc[i]}): {paths[i]} {why}" for i, why in bad[:5])
            more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
            raise DataError(f"{file} column '{col}' points at {len(bad)} unusable image(s): {shown}{more}; "
                            f"fix them (a train row may be dropped instead; a test row must stay, the submission "
                            f"needs its id). Paths are relative to data.dir")

    def save_assets(self, out_dir: Path) -> None:
        """timm models are rebuilt by name; nothing else is needed at inference."""

    def transform(self, train: bool) -> A.Compose:
        h, w = image_hw(self.cfg.data.image_size)
        steps = [A.Resize(h, w)] + (self.augs if train else [])
        return A.Compose(steps + [A.Normalize(mean=self.mean, std=self.std)])

    def loader(self, df: pd.DataFrame, targets: np.ndarray | None, train: bool, batch_size: int,
               generator: torch.Generator | None = None, weights: np.ndarray | None = None) -> DataLoader:
        """weights: per-row loss weights (pseudo-labelled rows), yielded as batch["weight"]."""
        paths = [str(self.root / str(p)) for p in df[self.cfg.data.image_col]]
        workers = self.cfg.train.num_workers
        images = None if self.cache is None else self.cache.decoded(paths)
        dataset = ImageDataset(paths, targets, self.transform(train), weights, images=images)
        # Workers start once per loader, not per epoch. The DataLoader draws their base seed (and, with no
        # workers, an unused one) from a generator of its own at every iter(): from `generator` or torch's
        # RNG, a persistent loader would draw it at its first epoch only, which a resumed run does elsewhere
        # in the sequence, and 0 workers would draw from torch's RNG (dropout's) where 2 do not.
        return DataLoader(dataset, batch_size=batch_size, sampler=SeededSampler(len(paths), generator) if train
                          else None, drop_last=train and len(paths) > batch_size, num_workers=workers,
                          persistent_workers=workers > 0, pin_memory=torch.cuda.is_available(),
                          generator=torch.Generator().manual_seed(0))

    def warm(self, df: pd.DataFrame) -> None:
        """data.cache: decode df's images now, so the folds' loaders share one store instead of decoding
        their own subsets."""
        if self.cache is not None:
            self.cache.decoded([str(self.root / str(p)) for p in df[self.cfg.data.image_col]])

    @staticmethod
    def is_view(view: str) -> bool:
        f = scale_of(view)
        return view in VIEW_OPS or (f is not None and f > 0)

    def views(self, views: list[str]) -> ImageViews | None:
        """The infer() hook running `views` in one forward per image size; None for [identity]."""
        return None if list(views) == ["identity"] else ImageViews(views)

    def build_model(self, n_outputs: int, pretrained: bool) -> torch.nn.Module:
        """model.drop_path > 0: timm's stochastic depth (drop_path_rate, rising linearly to that rate over the
        blocks); train.grad_checkpointing: timm's set_grad_checkpointing (activations recomputed in backward)."""
        m = self.cfg.model
        kwargs = dict(num_classes=n_outputs, drop_rate=m.drop_rate)
        if m.drop_path > 0:
            kwargs["drop_path_rate"] = m.drop_path
        if pretrained and m.weights:
            if not Path(m.weights).is_file():
                raise ConfigError(f"config key 'model.weights': file {m.weights} not found")
            kwargs["pretrained_cfg_overlay"] = dict(file=str(m.weights))
        try:
            net = timm.create_model(m.name, pretrained=pretrained, **kwargs)
        except TypeError as e:
            if "drop_path_rate" in str(e):
                raise ConfigError(f"config key 'model.drop_path': timm's {m.name!r} has no stochastic depth "
                                  f"(drop_path_rate); set model.drop_path=0") from None
            raise ConfigError(f"config key 'model.name': timm cannot build {m.name!r} ({e})") from None
        except Exception as e:  # noqa: BLE001 - unknown name, no network, bad file: all mean "fix the config"
            raise ConfigError(f"config key 'model.name': timm cannot build {m.name!r} ({type(e).__name__}: {e}); "
                              f"offline, set model.weights=<local file> or model.pretrained=false") from None
        if self.cfg.train.grad_checkpointing:
            grad_checkpointing(net, m.name)
        return ImageModel(net)


def grad_checkpointing(net: torch.nn.Module, name: str) -> None:
    """Recompute the blocks' activations in the backward pass (timm's checkpoint_seq). Helps when activations,
    not weights, fill the GPU (large images, large batches): less memory for ~20-30% more time per step, the
    same gradients. Useless on CPU or when memory is not the limit. Models whose timm code cannot do it
    (set_grad_checkpointing asserts, or is missing) are refused rather than silently left as they are."""
    try:
        net.set_grad_checkpointing(True)
    except (AssertionError, AttributeError, NotImplementedError) as e:
        raise ConfigError(f"config key 'train.grad_checkpointing': timm's {name!r} does not support gradient "
                          f"checkpointing ({type(e).__name__}: {e or 'not supported'}); set "
                          f"train.grad_checkpointing=false or choose another model.name") from None
