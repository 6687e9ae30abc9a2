"""make eda's image probe: sizes and channels, content hashes, thumbnails, cheap pixel features (see __init__.py).

Each image is read once: the bytes are hashed (md5: exact duplicates), the header gives size and mode,
and a 32x32 grayscale reduction (JPEG files decode at reduced scale via Image.draft, so large photos stay
fast) gives brightness, contrast, the 8x8 pixels the adversarial classifier sees, and the near-duplicate
test: a 16x16 average hash within NEAR_BITS of 256 bits (a cheap filter), confirmed by a correlation of
the 32x32 grayscale images >= NEAR_CORR. That finds re-encodings and brightness / contrast changes; the
hash alone would pair most items of a homogeneous set (Fashion-MNIST: 20k pairs in 4k images, 1 left
after the correlation). Resizes of very small images change too many pixels to be found.
"""
from __future__ import annotations

import hashlib
import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from ..core.atomic import write_with
from ..modality.augment import describe
from .report import Profile, figure, save_png, table

KEY_DESCRIPTION = "identical file bytes, md5"
NEAR_DESCRIPTION = "16x16 average hash within 8 of 256 bits and 32x32 grayscale correlation >= 0.99"
ADVERSARIAL_DESCRIPTION = "8x8 grayscale pixels, width, height, channels, brightness, contrast, file size"
NEAR_BITS, NEAR_CORR = 8, 0.99
PER_CLASS, MAX_CLASSES, TILE = 8, 12, 64     # samples.png: thumbnails per class, classes, tile side


class Context:
    def __init__(self, cfg):
        self.cfg, self.root = cfg, Path(cfg.data.dir)


def read(path: Path) -> dict:
    try:
        data = path.read_bytes()
        with Image.open(io.BytesIO(data)) as im:
            w, h, mode, bands = *im.size, im.mode, len(im.getbands())
            im.draft("L", (64, 64))  # JPEG: decode at 1/2..1/8 scale; other formats ignore it
            gray = np.asarray(im.convert("L").resize((32, 32), Image.BOX), dtype=np.float32) / 255.0
    except FileNotFoundError:
        return {"problem": "missing"}
    except Exception as e:  # noqa: BLE001 - any decoder failure: reported, the rest of the report goes on
        return {"problem": f"does not decode ({type(e).__name__})"}
    pooled16 = gray.reshape(16, 2, 16, 2).mean((1, 3))
    centred = gray.ravel() - gray.mean()
    return {"problem": "", "md5": hashlib.md5(data).hexdigest(), "width": w, "height": h, "mode": mode,
            "channels": bands, "kbytes": len(data) / 1024, "brightness": float(gray.mean()),
            "contrast": float(gray.std()), "ahash": np.packbits(pooled16 > pooled16.mean()),
            "unit": (centred / (np.linalg.norm(centred) + 1e-6)).astype(np.float16),
            "pixels": gray.reshape(8, 4, 8, 4).mean((1, 3)).ravel()}


def profile(ctx: Context, df: pd.DataFrame) -> Profile:
    paths = [ctx.root / str(p) for p in df[ctx.cfg.data.image_col]]
    with ThreadPoolExecutor(4) as pool:  # PIL decodes and zlib release the GIL
        rows = list(pool.map(read, paths))
    info = pd.DataFrame(rows, columns=["problem", "md5", "width", "height", "mode", "channels", "kbytes",
                                       "brightness", "contrast"])

    def stack(key: str, n: int, dtype) -> np.ndarray:  # unreadable rows get zeros (they are masked out later)
        return np.stack([r.get(key, np.zeros(n, dtype)) for r in rows]) if rows else np.zeros((0, n), dtype)
    stats = info[["width", "height", "channels", "brightness", "contrast", "kbytes"]].astype(float)
    return Profile(df, info["md5"].fillna(""), stats, info["problem"].fillna(""),
                   {"mode": info["mode"], "ahash": stack("ahash", 32, np.uint8), "paths": paths,
                    "unit": stack("unit", 1024, np.float16), "pixels": stack("pixels", 64, np.float32)})


def section(ctx: Context, tr: Profile, te: Profile, out: Path) -> tuple[list[str], dict]:
    cfg = ctx.cfg
    lines = ["## Images", ""]
    sizes, modes = {}, {}
    for name, p in (("train", tr), ("test", te)):
        ok = p.problems == ""
        size = (p.stats["width"][ok].astype(int).astype(str) + "x" + p.stats["height"][ok].astype(int).astype(str))
        sizes[name] = size.value_counts()
        modes[name] = (p.extra["mode"][ok] + " (" + p.stats["channels"][ok].astype(int).astype(str) + " ch)") \
            .value_counts()
        bad = np.flatnonzero(~ok)
        if len(bad):
            shown = "; ".join(f"{p.extra['paths'][i]}: {p.problems.iloc[i]}" for i in bad[:5])
            lines += [f"**{len(bad)} unreadable {name} image(s)**: {shown}. `make check` lists them all.", ""]
    top = pd.DataFrame({"train": sizes["train"], "test": sizes["test"]}).fillna(0).astype(int)
    top = top.sort_values("train", ascending=False).head(10).reset_index(names="width x height")
    mode_table = pd.DataFrame({"train": modes["train"], "test": modes["test"]}).fillna(0).astype(int)
    lines += [f"Sizes (most common 10 of {len(set(sizes['train'].index) | set(sizes['test'].index))}); "
              f"every image is resized to data.image_size={cfg.data.image_size} "
              f"({'square' if isinstance(cfg.data.image_size, int) else 'height x width'}):", "", table(top), "",
              "Modes (the loader reads every image as 3-channel RGB: grayscale is repeated, alpha dropped):", "",
              table(mode_table.reset_index(names="mode")), ""]
    if len(sizes["train"]) > 1 or len(sizes["test"]) > 1:
        fig, (ax,) = figure(1, 5, 4)
        for name, p in (("train", tr), ("test", te)):
            ax.scatter(p.stats["width"], p.stats["height"], s=6, alpha=0.4, label=name)
        ax.set_xlabel("width")
        ax.set_ylabel("height")
        ax.legend()
        save_png(out / "sizes.png", fig)
        lines += ["![sizes](sizes.png)", ""]
    samples_png(ctx, tr, out / "samples.png")
    augs = describe(cfg.aug, cfg.data.image_size)
    lines += ["Samples per label (train):", "", "![samples](samples.png)", "", "### Training augmentations", "",
              f"What make train does to each training image: {augs[0]}", "", *augs[1:], "",
              "Each transform assumes a symmetry of the labels. Where the data lacks it (digits, text, left / right "
              "classes have no mirror symmetry) choose another aug.preset or list aug.train; photos usually gain "
              "from aug.preset=medium (flips). `make sanity` saves the augmented images.", ""]
    return lines, {"augmentations": augs, "sizes": {k: v.to_dict() for k, v in sizes.items()},
                   "modes": {k: v.to_dict() for k, v in modes.items()}}


def samples_png(ctx: Context, tr: Profile, path: Path) -> None:
    """Thumbnails drawn straight with PIL (a matplotlib subplot per image takes seconds): one row per class
    (classification), or a grid of random rows captioned with their targets."""
    from PIL import ImageDraw

    cfg, df = ctx.cfg, tr.df[tr.problems.to_numpy() == ""]
    cols = list(cfg.data.target_cols)
    if cfg.problem in ("binary", "multiclass"):
        labels = df[cols[0]].astype(str)
        grid = [[(lab, i) for i in labels.index[labels == lab][:PER_CLASS]]
                for lab in labels.value_counts().index[:MAX_CLASSES]]
    else:
        picked = list(df.sample(min(len(df), 4 * PER_CLASS), random_state=cfg.seed).index)
        grid = [[(" ".join(f"{df.at[i, c]:.3g}" if isinstance(df.at[i, c], float) else str(df.at[i, c])
                           for c in cols[:4]), i) for i in picked[r:r + PER_CLASS]]
                for r in range(0, len(picked), PER_CLASS)]
    caption = 12
    sheet = Image.new("RGB", (PER_CLASS * (TILE + 4), max(1, len(grid)) * (TILE + caption + 4)), "white")
    draw = ImageDraw.Draw(sheet)
    for r, row in enumerate(grid):
        for c, (title, i) in enumerate(row):
            with Image.open(tr.extra["paths"][i]) as im:
                im = im.convert("RGB")
                im.thumbnail((TILE, TILE), Image.NEAREST if max(im.size) < TILE else Image.BILINEAR)
                if max(im.size) < TILE:  # small images scaled up so a person can see them
                    k = TILE / max(im.size)
                    im = im.resize((max(1, round(im.width * k)), max(1, round(im.height * k))), Image.NEAREST)
            x, y = c * (TILE + 4) + 2, r * (TILE + caption + 4) + 2
            draw.text((x, y), str(title)[:12], fill="black")
            sheet.paste(im, (x, y + caption))
    write_with(path, lambda tmp: sheet.save(tmp, format="PNG"))


def near_pairs(a: Profile, rows_a: np.ndarray, b: Profile, rows_b: np.ndarray, same: bool) -> list[tuple]:
    """(i, j) row pairs whose hashes are within NEAR_BITS and whose images correlate >= NEAR_CORR, with
    different bytes (exact duplicates are reported as such). Chunks keep memory flat."""
    if not len(rows_a) or not len(rows_b):
        return []
    h_a = np.ascontiguousarray(a.extra["ahash"][rows_a]).view(np.uint64)
    h_b = np.ascontiguousarray(b.extra["ahash"][rows_b]).view(np.uint64)
    u_a, u_b = a.extra["unit"][rows_a], b.extra["unit"][rows_b]
    pairs = []
    for start in range(0, len(h_a), 256):
        d = np.bitwise_count(h_a[start:start + 256, None, :] ^ h_b[None, :, :]).sum(-1)
        i, j = np.nonzero(d <= NEAR_BITS)
        i = i + start
        keep = i < j if same else np.ones(len(i), bool)
        for k in range(0, len(i), 20000):  # a homogeneous set can give millions of hash candidates
            ii, jj = i[k:k + 20000], j[k:k + 20000]
            corr = np.einsum("ij,ij->i", u_a[ii].astype(np.float32), u_b[jj].astype(np.float32))
            keep[k:k + 20000] &= corr >= NEAR_CORR
        pairs += [(int(rows_a[x]), int(rows_b[y])) for x, y in zip(i[keep], j[keep])
                  if a.key.iloc[rows_a[x]] != b.key.iloc[rows_b[y]]]
    return pairs


def near_duplicates(tr: Profile, te: Profile):
    ok_tr, ok_te = np.flatnonzero(tr.problems == ""), np.flatnonzero(te.problems == "")
    found: dict[int, int] = {}
    for i, j in near_pairs(te, ok_te, tr, ok_tr, False):
        found.setdefault(i, j)
    return near_pairs(tr, ok_tr, tr, ok_tr, True), sorted(found.items())


def adversarial_features(tr: Profile, te: Profile, ok_tr: np.ndarray, ok_te: np.ndarray) -> np.ndarray:
    x = np.vstack([np.hstack([p.extra["pixels"][ok], p.stats[ok].to_numpy(float)])
                   for p, ok in ((tr, ok_tr), (te, ok_te))])
    x = np.nan_to_num(x)
    return (x - x.mean(0)) / (x.std(0) + 1e-6)  # standardised: the logistic regression's penalty is fair
