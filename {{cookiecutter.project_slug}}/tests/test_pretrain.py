"""make pretrain: masked-LM post-pretraining of the tiny demo BERT on the demo corpus. Held-out perplexity
falls, the saved directory is what training loads, resuming is exact, and bad inputs stop before any work."""
import json
import shutil

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel, AutoModelForMaskedLM, AutoTokenizer

from helpers import mod, run_cli

config, pretrain, corpus, text = mod("core.config"), mod("pretrain"), mod("pretrain.corpus"), mod("modality.text")
# 3 short epochs at a high lr: enough for the tiny model's held-out perplexity to fall, in about a second
FAST = ["pretrain.max_len=32", "pretrain.batch_size=16", "pretrain.lr=3e-3", "pretrain.epochs=3",
        "pretrain.valid_fraction=0.1"]


@pytest.fixture
def pt(tiny):
    return [*tiny, *FAST]


def record(workdir, exp="pt") -> dict:
    return json.loads((workdir / "outputs" / exp / "pretrain.json").read_text())


def test_held_out_perplexity_falls_and_is_recorded(pt, workdir, capsys):
    assert run_cli("pretrain", "--exp", "pt", *pt) == 0, capsys.readouterr().err
    r = record(workdir)
    assert {"loss_before", "loss_after", "perplexity_before", "perplexity_after", "n_texts", "n_valid_texts",
            "steps", "epochs", "wall_seconds", "model_name"} <= set(r)
    assert r["perplexity_after"] < 0.8 * r["perplexity_before"]
    assert r["perplexity_before"] == pytest.approx(torch.tensor(r["loss_before"]).exp().item(), rel=1e-5)
    assert r["n_valid_texts"] == round(0.1 * r["n_texts"]) and r["epochs"] == 3
    assert "perplexity" in (workdir / "outputs" / "pt" / "train.log").read_text()


def test_training_loads_exactly_the_saved_encoder(pt, demo_dir, workdir, capsys):
    assert run_cli("pretrain", "--exp", "pt", *pt) == 0, capsys.readouterr().err
    saved = workdir / "outputs" / "pt" / "model"
    tokenizer = AutoTokenizer.from_pretrained(saved)
    assert tokenizer.mask_token == "[MASK]"
    encoder, info = AutoModel.from_pretrained(saved, output_loading_info=True)
    assert all(k.startswith("pooler.") for k in info["missing_keys"])  # only the unused pooler is new
    mlm = AutoModelForMaskedLM.from_pretrained(saved).base_model.state_dict()
    original = AutoModelForMaskedLM.from_pretrained(demo_dir / "tiny_bert").base_model.state_dict()
    cfg = config.load("demo", [f"model.name={saved}", f"data.dir={demo_dir}"])
    backbone = text.Modality(cfg).build_model(2, pretrained=True).backbone.state_dict()
    assert set(backbone) <= set(mlm)
    assert all(torch.equal(backbone[k], mlm[k]) for k in backbone)
    assert not torch.equal(backbone["embeddings.word_embeddings.weight"], original["embeddings.word_embeddings.weight"])


def test_train_fine_tunes_from_the_pretrained_directory(tiny, pt, workdir, capsys):
    assert run_cli("pretrain", "--exp", "pt", *pt) == 0, capsys.readouterr().err
    model = workdir / "outputs" / "pt" / "model"
    code = run_cli("train", "--exp", "ft", *tiny, f"model.name={model}", "train.folds=[0]", "train.epochs=1")
    assert code == 0, capsys.readouterr().err
    assert json.loads((workdir / "outputs" / "ft" / "cv.json").read_text())["folds_run"] == [0]


class Interrupted(KeyboardInterrupt):  # the run is stopped like a Ctrl-C
    pass


def test_resume_ends_with_the_weights_of_an_uninterrupted_run(pt, workdir, monkeypatch, capsys):
    args = [*pt, "pretrain.epochs=2"]
    assert run_cli("pretrain", "--exp", "whole", *args) == 0, capsys.readouterr().err
    saves = []
    real_save = pretrain.Pretraining.checkpoint

    def save_then_die(self):  # killed mid-epoch, right after the third checkpoint
        real_save(self)
        saves.append(1)
        if len(saves) == 3:
            raise Interrupted

    monkeypatch.setattr(pretrain, "SAVE_MINUTES", 0)  # a checkpoint after every step
    monkeypatch.setattr(pretrain.Pretraining, "checkpoint", save_then_die)
    assert run_cli("pretrain", "--exp", "cut", *args) == 130
    assert "RESUME=1" in capsys.readouterr().err
    assert not (workdir / "outputs" / "cut" / "model").exists()
    monkeypatch.setattr(pretrain.Pretraining, "checkpoint", real_save)
    assert run_cli("pretrain", "--exp", "cut", *args) == 2  # forgot RESUME=1: told, not wiped
    assert "RESUME=1" in capsys.readouterr().err
    assert run_cli("pretrain", "--exp", "cut", "--resume", *args) == 0, capsys.readouterr().err
    whole, cut = record(workdir, "whole"), record(workdir, "cut")
    assert cut["resumed_from_step"] == 3 and cut["steps"] == whole["steps"]
    assert cut["loss_before"] == whole["loss_before"]
    a = load_file(workdir / "outputs" / "whole" / "model" / "model.safetensors")
    b = load_file(workdir / "outputs" / "cut" / "model" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_extends_a_finished_run_without_redoing_its_steps(pt, workdir, capsys):
    assert run_cli("pretrain", "--exp", "pt", *pt, "pretrain.max_steps=4") == 0, capsys.readouterr().err
    assert run_cli("pretrain", "--exp", "pt", "--resume", *pt, "pretrain.max_steps=8") == 0, capsys.readouterr().err
    r = record(workdir)
    assert r["steps"] == 8 and r["resumed_from_step"] == 4
    assert "resumed from" in (workdir / "outputs" / "pt" / "train.log").read_text()


def test_resume_refuses_a_changed_setting_and_a_missing_checkpoint(pt, workdir, capsys):
    assert run_cli("pretrain", "--exp", "pt", "--resume", *pt) == 2
    assert "no checkpoint" in capsys.readouterr().err
    assert run_cli("pretrain", "--exp", "pt", *pt, "pretrain.max_steps=2") == 0
    assert run_cli("pretrain", "--exp", "pt", "--resume", *pt, "pretrain.max_len=16") == 2
    assert "pretrain.max_len" in capsys.readouterr().err
    assert run_cli("pretrain", "--exp", "pt", *pt) == 2  # no --resume: a finished run is not replaced
    assert "overwrite=true" in capsys.readouterr().err


@pytest.mark.parametrize("override, key", [
    ("pretrain.mlm_probability=0", "pretrain.mlm_probability"),
    ("pretrain.mlm_probability=1", "pretrain.mlm_probability"),
    ("pretrain.valid_fraction=0", "pretrain.valid_fraction"),
    ("pretrain.max_len=4", "pretrain.max_len"),
    ("pretrain.max_len=4096", "pretrain.max_len"),  # beyond the tiny BERT's 128 positions
    ("pretrain.extra_files=[missing.txt]", "missing.txt"),
])
def test_bad_settings_are_refused_before_any_work(pt, workdir, capsys, override, key):
    assert run_cli("pretrain", "--exp", "bad", *pt, override) == 2
    assert key in capsys.readouterr().err
    assert not (workdir / "outputs" / "bad").exists()


def test_a_tokenizer_without_mask_token_is_refused(pt, demo_dir, tmp_path, workdir, capsys):
    model = tmp_path / "no_mask"
    shutil.copytree(demo_dir / "tiny_bert", model)
    tokenizer = AutoTokenizer.from_pretrained(model)
    tokenizer.mask_token = None
    tokenizer.save_pretrained(model)
    assert run_cli("pretrain", "--exp", "bad", *pt, f"model.name={model}") == 2
    err = capsys.readouterr().err
    assert "mask token" in err and "model.name" in err
    assert not (workdir / "outputs" / "bad").exists()


def test_no_text_left_after_cleaning_is_refused(pt, data_copy, workdir, capsys):
    cols = config.load("demo", pt).data.text_cols
    for name in ("train.csv", "test.csv"):
        df = pd.read_csv(data_copy / name, dtype=str, keep_default_na=False)
        df[cols] = "   "
        df.to_csv(data_copy / name, index=False)
    assert run_cli("pretrain", "--exp", "bad", *pt, f"data.dir={data_copy}") == 2
    assert "non-empty" in capsys.readouterr().err
    assert not (workdir / "outputs" / "bad").exists()


def test_extra_files_add_their_distinct_lines_to_the_corpus(pt, data_copy, workdir, capsys):
    (data_copy / "extra.txt").write_text("zebra quartz lantern\n\n  zebra quartz lantern \nmarble violin\n")
    assert run_cli("pretrain", "--exp", "base", *pt, f"data.dir={data_copy}", "pretrain.max_steps=1") == 0
    assert run_cli("pretrain", "--exp", "more", *pt, f"data.dir={data_copy}", "pretrain.max_steps=1",
                   "pretrain.extra_files=[extra.txt]") == 0, capsys.readouterr().err
    assert record(workdir, "more")["n_texts"] == record(workdir, "base")["n_texts"] + 2


@pytest.mark.parametrize("group_texts", [True, False])
def test_whole_word_masking_masks_every_piece_of_a_chosen_word(demo_dir, workdir, group_texts):
    cfg = config.load("demo", [f"model.name={demo_dir / 'tiny_bert'}", "pretrain.whole_word=true",
                               "pretrain.mlm_probability=0.5", f"pretrain.group_texts={str(group_texts).lower()}"])
    tokenizer = AutoTokenizer.from_pretrained(cfg.model.name)
    texts = ["zebraquartzlantern marblevioline great song", "the wonderfulsuperbness of pizzarecipes"] * 8
    examples = corpus.make_examples(tokenizer, texts, cfg.pretrain)
    batch = corpus.Masker(tokenizer, cfg.pretrain, seed=0)(examples, 0)
    masked_words = 0
    for ex, labels in zip(examples, batch["labels"]):
        words: dict = {}
        prev_end, word = -1, 0
        for i, ((start, end), special) in enumerate(zip(ex["offset_mapping"].tolist(), ex["special_tokens_mask"])):
            if special:
                prev_end = -1
                continue
            word += start != prev_end
            prev_end = end
            words.setdefault(word, []).append(labels[i].item() != -100)
        assert all(len(set(flags)) == 1 for flags in words.values())  # a word is masked whole or not at all
        masked_words += sum(flags[0] and len(flags) > 1 for flags in words.values())
    assert masked_words > 0  # some multi-piece words were masked


@pytest.mark.parametrize("kind", ["bert_without_head", "deberta-v3-tiny"])
def test_a_random_mlm_head_is_warned_about_and_still_trains(pt, demo_dir, tmp_path, workdir, capsys, kind):
    from transformers import BertConfig, BertModel, DebertaV2Config, DebertaV2ForMaskedLM
    source = demo_dir / "tiny_bert"
    model_dir = tmp_path / kind
    AutoTokenizer.from_pretrained(source).save_pretrained(model_dir)
    small = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                 max_position_embeddings=128, vocab_size=BertConfig.from_pretrained(source).vocab_size)
    if kind == "bert_without_head":  # e.g. a sentence-embedding checkpoint: encoder weights only
        BertModel(BertConfig(**small)).save_pretrained(model_dir)
    else:  # DeBERTa-v3 ships a replaced-token-detection model: its MLM head means nothing
        DebertaV2ForMaskedLM(DebertaV2Config(**small)).save_pretrained(model_dir)
    assert run_cli("pretrain", "--exp", "pt", *pt, f"model.name={model_dir}", "pretrain.max_steps=2") == 0, \
        capsys.readouterr().err
    log = (workdir / "outputs" / "pt" / "train.log").read_text()
    assert "starts random" in log and ("DeBERTa-v3" in log) == kind.startswith("deberta")
    assert record(workdir)["notes"] and record(workdir)["steps"] == 2


def test_pretraining_runs_through_make_trains_loop_optimiser_and_schedule(pt, workdir, monkeypatch, capsys):
    """One trainer: the masked-LM steps run in training.loop.train_epoch with training.optim's parameter
    groups (no weight decay on biases and norms) and its hf_linear schedule."""
    fit = mod("training.fit")
    real, seen = fit.train_epoch, []

    def spy(model, loader, optimizer, scheduler, *args, **kwargs):
        seen.append((optimizer, scheduler, len(loader)))
        return real(model, loader, optimizer, scheduler, *args, **kwargs)
    monkeypatch.setattr(fit, "train_epoch", spy)
    assert run_cli("pretrain", "--exp", "pt", *pt) == 0, capsys.readouterr().err
    assert len(seen) == 3 == record(workdir)["epochs"]  # one call per epoch
    optimizer, scheduler, _ = seen[0]
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.01, 0.0]
    assert scheduler.get_last_lr()[0] == pytest.approx(0.0)  # transformers' linear schedule ends at 0
