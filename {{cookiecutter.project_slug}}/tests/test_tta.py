"""Test-time augmentation and length-sorted inference: views are what they say, their probabilities are
averaged (never their logits), batching changes nothing, sorting changes nothing, and tta.oof redoes the
OOF and CV while keeping the training-time ones."""
import json
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from accelerate import Accelerator

from conftest import TARGET_OVERRIDE
from helpers import PROJECT, mod, run_cli

config, loop, metrics, targets, tta = mod("core.config"), mod("training.loop"), mod("core.metrics"), mod("core.labels"), mod("modality.tta")
TASK = config.load(config_dir=PROJECT / "configs").task
PROBLEM = config.load(config_dir=PROJECT / "configs").problem
image_only = pytest.mark.skipif(TASK != "image", reason="image views")
text_only = pytest.mark.skipif(TASK != "text", reason="text views and length sorting")
# views that change the demo's predictions: a flip for images, the tail of texts cut to 8 tokens
VIEWS = "tta.views=[identity,hflip]" if TASK == "image" else "tta.views=[identity,tail]"
SHORT = [] if TASK == "image" else ["data.max_len=8"]


@pytest.fixture(scope="module")
def trained(demo_dir, tmp_path_factory):
    """One tiny run (folds 0 and 1 of 3, one epoch), trained once; each test predicts in its own copy."""
    root = tmp_path_factory.mktemp("tta_run")
    shutil.copytree(PROJECT / "configs", root / "configs")
    args = [f"data.dir={demo_dir}", *TARGET_OVERRIDE, "train.progress=false"]
    if TASK == "text":
        args.append(f"model.name={demo_dir / 'tiny_bert'}")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        assert run_cli("train", "--exp", "demo", *args, "train.folds=[0,1]", "train.epochs=1", *SHORT) == 0
    return root / "outputs" / "demo"


@pytest.fixture
def run_dir(trained, workdir):
    dst = workdir / "outputs" / "demo"
    shutil.copytree(trained, dst)
    return dst


def read_preds(path) -> np.ndarray:
    df = pd.read_csv(path, dtype=str)
    return df.iloc[:, 1:].astype(float).to_numpy()


# ---- reduce ------------------------------------------------------------------------------------------
def test_gmean_is_the_renormalised_geometric_mean_of_probabilities():
    p = np.array([[[0.7, 0.2, 0.1]], [[0.4, 0.4, 0.2]]])  # 2 views, 1 row, 3 classes
    g = np.array([np.sqrt(0.7 * 0.4), np.sqrt(0.2 * 0.4), np.sqrt(0.1 * 0.2)])
    assert np.allclose(tta.reduce_views(p, "gmean", "multiclass"), g / g.sum())
    assert np.allclose(tta.reduce_views(p, "mean", "multiclass"), [[0.55, 0.3, 0.15]])
    q = np.array([[[0.9, 0.2]], [[0.6, 0.5]]])  # multilabel: each column its own Bernoulli
    on, off = np.sqrt([0.9 * 0.6, 0.2 * 0.5]), np.sqrt([0.1 * 0.4, 0.8 * 0.5])
    assert np.allclose(tta.reduce_views(q, "gmean", "multilabel"), on / (on + off))
    zero = tta.reduce_views(np.array([[[1.0, 0.0]], [[0.5, 0.5]]]), "gmean", "binary")
    assert np.isfinite(zero).all() and np.allclose(zero.sum(1), 1.0)  # clamped before the log


def test_views_are_averaged_as_probabilities_not_logits():
    label_map = targets.LabelMap("binary", ["y"], classes=["0", "1"])
    two_views = lambda model, batch: torch.tensor([[[0.0, 0.0], [10.0, 0.0]]])  # noqa: E731 - (B=1, V=2, C=2)
    preds, _ = loop.infer(torch.nn.Identity(), [{"x": torch.zeros(1)}], Accelerator(cpu=True),
                          label_map, progress=False, views=two_views)
    expected = (torch.tensor([0.0, 0.0]).softmax(0) + torch.tensor([10.0, 0.0]).softmax(0)) / 2
    assert np.allclose(preds[0], expected.numpy(), atol=1e-6)
    assert not np.allclose(preds[0], torch.tensor([5.0, 0.0]).softmax(0).numpy(), atol=1e-3)


# ---- predict and tta.oof -----------------------------------------------------------------------------
def test_identity_oof_reproduces_the_training_oof(run_dir, capsys):
    before = read_preds(run_dir / "oof_preds.csv")
    cv = json.loads((run_dir / "cv.json").read_text())
    assert run_cli("predict", "--exp", "demo", "tta.views=[identity]", "tta.oof=true") == 0, capsys.readouterr().err
    after = read_preds(run_dir / "oof_preds.csv")
    assert np.array_equal(np.isnan(before), np.isnan(after)) and np.isnan(after).any()  # fold 2 was not run
    assert np.allclose(before, after, atol=1e-5, equal_nan=True)
    assert np.isclose(json.loads((run_dir / "cv.json").read_text())["cv"], cv["cv"], atol=1e-6)


def test_tta_oof_keeps_the_training_oof_and_cv(run_dir, demo_dir, capsys):
    old_oof = (run_dir / "oof_preds.csv").read_bytes()
    old_cv = json.loads((run_dir / "cv.json").read_text())
    assert run_cli("predict", "--exp", "demo", VIEWS, "tta.oof=true") == 0, capsys.readouterr().err
    assert (run_dir / "oof_preds_notta.csv").read_bytes() == old_oof
    assert (run_dir / "oof_preds.csv").read_bytes() != old_oof
    cv = json.loads((run_dir / "cv.json").read_text())
    views = VIEWS.split("=")[1].strip("[]").split(",")
    assert cv["cv_no_tta"] == old_cv["cv"] and cv["folds_no_tta"] == old_cv["folds"]
    assert cv["tta"] == {"views": views, "reduce": "mean"} and cv["folds_run"] == old_cv["folds_run"]
    saved = config.load("demo", base=run_dir / "config.yaml")
    label_map = targets.LabelMap.load(run_dir / "labels.json")
    train = pd.read_csv(demo_dir / "train.csv", dtype={saved.data.id_col: str})
    oof = read_preds(run_dir / "oof_preds.csv")
    ran = ~np.isnan(oof).any(1)
    y = label_map.encode(train, saved.data.id_col)
    assert np.isclose(cv["cv"], metrics.score(saved.metric, saved.problem, y[ran], oof[ran]))
    record = json.loads((run_dir / "predict.json").read_text())
    assert record["views"] == views and record["tta_oof"] is True
    # a second round with other views still keeps the training-time originals
    assert run_cli("predict", "--exp", "demo", "tta.views=[identity]", "tta.oof=true") == 0
    assert (run_dir / "oof_preds_notta.csv").read_bytes() == old_oof
    assert json.loads((run_dir / "cv.json").read_text())["cv_no_tta"] == old_cv["cv"]


def test_an_unknown_view_is_refused_naming_the_key(run_dir, capsys):
    assert run_cli("predict", "--exp", "demo", "tta.views=[identity,sideways]") == 2
    err = capsys.readouterr().err
    assert "tta.views" in err and "sideways" in err and ("hflip" if TASK == "image" else "head_tail") in err
    assert not (run_dir / "test_preds.csv").exists()


@pytest.mark.skipif(PROBLEM != "regression", reason="gmean is refused for regression only")
def test_gmean_of_regression_values_is_refused(run_dir, capsys):
    assert run_cli("predict", "--exp", "demo", "tta.reduce=gmean") == 2
    assert "tta.reduce" in capsys.readouterr().err


# ---- image views -------------------------------------------------------------------------------------
def _image_setup(demo_dir, rows=8):
    image = mod("modality.image")
    cfg = config.load("demo", [f"data.dir={demo_dir}"])
    m = image.Modality(cfg)
    torch.manual_seed(0)
    model = m.build_model(3, pretrained=False).eval()
    batch = next(iter(m.loader(pd.read_csv(demo_dir / "test.csv", dtype=str).head(rows), None, False, rows)))
    return image, m, model, batch


@image_only
def test_hflip_view_is_the_model_on_the_flipped_image(demo_dir, workdir):
    _, m, model, batch = _image_setup(demo_dir)
    flipped = {"image": torch.from_numpy(batch["image"].numpy()[..., ::-1].copy())}
    with torch.no_grad():
        both = m.views(["identity", "hflip"])(model, batch)
        assert both.shape == (len(batch["image"]), 2, 3)
        assert torch.allclose(both[:, 0], model(batch), atol=1e-5)
        assert torch.allclose(both[:, 1], model(flipped), atol=1e-5)
        assert not torch.allclose(both[:, 0], both[:, 1], atol=1e-4)


@image_only
def test_same_size_views_share_one_forward_and_a_scale_gets_its_own(demo_dir, workdir):
    image, _, model, batch = _image_setup(demo_dir, rows=4)
    shapes = []

    def spy(b):
        shapes.append(tuple(b["image"].shape))
        return model(b)
    with torch.no_grad():
        out = image.ImageViews(["identity", "hflip", "rot90", "scale1.5"])(spy, batch)
    assert shapes == [(12, 3, 32, 32), (4, 3, 48, 48)] and out.shape == (4, 4, 3)


@image_only
def test_batched_views_equal_one_pass_per_view(run_dir, capsys):
    views = "tta.views=[identity,hflip,vflip,scale1.25]"
    assert run_cli("predict", "--exp", "demo", views, "tta.batched=true") == 0, capsys.readouterr().err
    batched = read_preds(run_dir / "test_preds.csv")
    assert json.loads((run_dir / "predict.json").read_text())["batched"] is True
    assert run_cli("predict", "--exp", "demo", views, "tta.batched=false") == 0
    assert np.allclose(batched, read_preds(run_dir / "test_preds.csv"), atol=1e-5)
    assert run_cli("predict", "--exp", "demo", "tta.views=[identity]") == 0
    assert not np.allclose(batched, read_preds(run_dir / "test_preds.csv"), atol=1e-4)


# ---- text views and length sorting -------------------------------------------------------------------
def _text_modality(demo_dir, *overrides):
    cfg = config.load("demo", [f"model.name={demo_dir / 'tiny_bert'}", *overrides])
    return cfg, mod("modality.text").Modality(cfg)


def _one_text(cfg, text: str) -> pd.DataFrame:
    cols = cfg.data.text_cols
    return pd.DataFrame({c: [text if i == 0 else ""] for i, c in enumerate(cols)})


@text_only
def test_truncation_views_keep_the_head_the_tail_and_both_ends(demo_dir, workdir):
    cfg, m = _text_modality(demo_dir, "data.max_len=10")
    views = ["identity", "head", "tail", "head_tail"]
    words = "the great song was very wonderful and the band played a lovely melody at the concert with superb guitar"
    full = m.tokenizer(words, add_special_tokens=False)["input_ids"]
    assert len(full) > 8
    cls, sep = m.tokenizer.cls_token_id, m.tokenizer.sep_token_id
    items, rows, slots = m.encode_views(_one_text(cfg, words), views)
    got = {v: items[slots[i, 0]] for i, v in enumerate(views)}
    assert got["head"]["input_ids"] == [cls, *full[:8], sep]
    assert got["tail"]["input_ids"] == [cls, *full[-8:], sep]
    assert got["head_tail"]["input_ids"] == [cls, *full[:4], *full[-4:], sep]
    assert got["identity"]["input_ids"] == got["head"]["input_ids"] and slots[0, 0] == slots[1, 0]
    assert all(len(e["attention_mask"]) == len(e["input_ids"]) == 10 for e in items)
    assert len(items) == 3 and list(rows) == [0, 0, 0]


@text_only
def test_a_text_that_fits_has_one_encoding_for_every_view(demo_dir, workdir):
    cfg, m = _text_modality(demo_dir, "data.max_len=10")
    items, _, slots = m.encode_views(_one_text(cfg, "great song"), ["identity", "head", "tail", "head_tail"])
    assert len(items) == 1 and (slots == 0).all()
    assert items[0]["input_ids"] == m.encode(_one_text(cfg, "great song"))[0]["input_ids"]


@text_only
@pytest.mark.parametrize("views", [["identity"], ["identity", "tail", "head_tail"]])
def test_length_sorted_predictions_come_back_in_row_order(demo_dir, workdir, views):
    label_map = targets.LabelMap("binary", ["y"], classes=["0", "1"])
    test = pd.read_csv(demo_dir / "test.csv", dtype=str)
    torch.manual_seed(0)
    model = _text_modality(demo_dir)[1].build_model(2, pretrained=True).eval()
    out = {}
    for sort, pad in [(False, False), (True, False), (True, True)]:
        cfg, m = _text_modality(demo_dir, "data.max_len=12", f"infer.sort_by_length={sort}",
                                f"infer.pad_to_max_len={pad}")
        loader = m.loader(test, None, False, 16, views=views)
        lengths = [b["input_ids"].shape[1] for b in loader]
        if sort:
            assert list(loader.dataset.rows) != sorted(loader.dataset.rows)  # the rows really were permuted
        assert all(n == 12 for n in lengths) if pad else max(lengths) <= 12
        out[sort, pad] = loop.infer(model, loader, Accelerator(cpu=True), label_map, progress=False)[0]
        assert out[sort, pad].shape == (len(test), 2)
    assert np.allclose(out[True, False], out[False, False], atol=1e-5)
    assert np.allclose(out[True, True], out[False, False], atol=1e-5)
