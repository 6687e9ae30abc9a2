"""Text inputs: empty texts are refused, columns are joined with [SEP], batches are padded dynamically,
and a run folder alone is enough to predict (offline)."""
import shutil

import pandas as pd
import pytest
import torch

from helpers import mod, run_cli

config, text = mod("core.config"), mod("modality.text")


@pytest.mark.parametrize("file, value", [("train.csv", "   "), ("test.csv", "")])
def test_empty_or_whitespace_text_is_named_with_its_line(data_copy, tiny, capsys, workdir, file, value):
    df = pd.read_csv(data_copy / file, dtype=str, keep_default_na=False)
    cols = config.load("demo", tiny).data.text_cols
    for c in cols:
        df.loc[2, c] = value
    df.to_csv(data_copy / file, index=False)
    code = run_cli("train", "--exp", "bad", *tiny, f"data.dir={data_copy}")
    err = capsys.readouterr().err
    assert code == 2 and f"{file} columns {cols}" in err and "empty or whitespace" in err and "line 4" in err
    assert not (workdir / "outputs" / "bad").exists()


def test_several_text_columns_are_joined_with_the_separator_token(demo_dir, workdir):
    cfg = config.load("demo", [f"model.name={demo_dir / 'tiny_bert'}", "data.text_cols=[a,b]"])
    m = text.Modality(cfg)
    enc = m.encode(pd.DataFrame({"a": ["great song"], "b": ["awful pizza"]}))[0]["input_ids"]
    sep = m.tokenizer.sep_token_id
    assert enc.count(sep) == 2 and enc[-1] == sep  # [CLS] a [SEP] b [SEP]


def test_batches_are_padded_to_their_own_longest_text(demo_dir, workdir):
    cfg = config.load("demo", [f"model.name={demo_dir / 'tiny_bert'}", "data.max_len=64",
                               "infer.sort_by_length=false"])  # sorted inference: see test_tta.py
    m = text.Modality(cfg)
    col = cfg.data.text_cols[0]
    df = pd.DataFrame({col: ["great", "great song", "great song awful pizza beach", "map"]})
    lengths = [len(e["input_ids"]) for e in m.encode(df)]
    batches = list(m.loader(df, None, train=False, batch_size=2))
    assert [b["input_ids"].shape[1] for b in batches] == [max(lengths[:2]), max(lengths[2:])]
    assert max(lengths) < 64


@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_mean_pooling_ignores_padding(demo_dir, workdir, pooling):
    cfg = config.load("demo", [f"model.name={demo_dir / 'tiny_bert'}", f"model.pooling={pooling}",
                               "infer.sort_by_length=false"])  # row 0 stays first in the batch
    m = text.Modality(cfg)
    model = m.build_model(2, pretrained=True).eval()
    col = cfg.data.text_cols[0]
    alone = next(iter(m.loader(pd.DataFrame({col: ["great song"]}), None, False, 1)))
    padded = next(iter(m.loader(pd.DataFrame({col: ["great song", "a much longer text about the beach"]}),
                                None, False, 2)))
    with torch.no_grad():
        assert torch.allclose(model(alone)[0], model(padded)[0], atol=1e-5)


def test_predict_needs_only_the_run_folder(demo_dir, tiny, workdir, tmp_path, capsys):
    model_dir = tmp_path / "model_copy"
    shutil.copytree(demo_dir / "tiny_bert", model_dir)
    args = ["--exp", "demo", *tiny, f"model.name={model_dir}", "train.folds=[0]", "train.epochs=1"]
    assert run_cli("train", *args) == 0, capsys.readouterr().err
    shutil.rmtree(model_dir)  # as on an offline Kaggle notebook: only outputs/<exp>/ is there
    shutil.rmtree(workdir / "configs")
    assert run_cli("predict", "--exp", "demo", f"data.dir={demo_dir}", "data.max_len=16") == 0, \
        capsys.readouterr().err
    assert (workdir / "outputs" / "demo" / "test_preds.csv").exists()
