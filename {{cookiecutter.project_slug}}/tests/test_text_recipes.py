"""Text recipes: any transformers backbone (encoder or decoder), every pooling, LoRA through peft, gradient
checkpointing, multi-sample dropout and re-initialised top layers, on tiny models built here (no download):
a 2-layer Llama with a BPE tokenizer trained on the fly (no pad token, as the real ones), a 2-layer
DeBERTa-v2 and the demo's tiny BERT."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import TARGET_OVERRIDE

from helpers import PROJECT, inside, like_demo, mod, run_cli

# problem-agnostic (the head and loss are the shared code's): the module runs where the slow tests run, in the one
# text project of the template's CI that runs them
pytestmark = pytest.mark.slow

config, text, text_model = mod("core.config"), mod("modality.text"), mod("modality.text_model")
checkpoints, optim, models = mod("training.checkpoints"), mod("training.optim"), mod("inference.models")
ConfigError = mod("core.errors").ConfigError
LabelMap = mod("core.labels").LabelMap

WORDS = ("great song awful pizza beach goal match team score coach guitar album band the a of and to in "
         "it was is this that with very really").split()


def build_tiny_llama(out: Path) -> Path:
    """A 2-layer Llama (hidden 32, grouped-query attention) and a byte-level BPE tokenizer trained now on a
    small corpus; bos/eos/unk but no pad token, as Llama's own tokenizer."""
    from tokenizers import Tokenizer, decoders, models as tok_models, pre_tokenizers, processors, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    rng = np.random.default_rng(0)
    corpus = [" ".join(rng.choice(WORDS, size=8)) for _ in range(200)]
    tok = Tokenizer(tok_models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<s>", "</s>"],
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>", pair="<s> $A </s> $B:1 </s>:1",
                                                       special_tokens=[("<s>", 1), ("</s>", 2)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", bos_token="<s>", eos_token="</s>",
                                   model_max_length=128)
    config_ = LlamaConfig(vocab_size=tok.get_vocab_size(), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                          bos_token_id=1, eos_token_id=2, pad_token_id=None)
    out.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(out)
    torch.manual_seed(0)
    LlamaForCausalLM(config_).save_pretrained(out)
    return out


def build_tiny_deberta(out: Path, bert_dir: Path) -> Path:
    """A 2-layer DeBERTa-v2 (relative attention) with the tiny BERT's WordPiece tokenizer."""
    from transformers import AutoTokenizer, DebertaV2Config, DebertaV2Model

    tokenizer = AutoTokenizer.from_pretrained(bert_dir)
    cfg = DebertaV2Config(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                          intermediate_size=64, max_position_embeddings=128, relative_attention=True,
                          position_buckets=16, pos_att_type=["p2c", "c2p"], type_vocab_size=0)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(out)
    torch.manual_seed(0)
    DebertaV2Model(cfg).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def backbones(demo_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("backbones")
    return {"bert": demo_dir / "tiny_bert", "deberta": build_tiny_deberta(root / "deberta", demo_dir / "tiny_bert"),
            "llama": build_tiny_llama(root / "llama")}


def _cfg(name: Path, *more: str):
    return config.load("demo", [f"model.name={name}", "infer.sort_by_length=false", *more])


def _batch(m, texts: list[str]) -> dict:
    col = m.cfg.data.text_cols[0]
    return next(iter(m.loader(pd.DataFrame({col: texts}), None, False, len(texts))))


def _inputs(batch: dict) -> dict:
    return {k: v for k, v in batch.items() if k in ("input_ids", "attention_mask", "token_type_ids")}


def _grads(model) -> dict:
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_auto_pooling_is_last_token_for_decoders_and_mean_for_encoders(backbones, workdir):
    pooled = {k: text.Modality(_cfg(p)).build_model(2, pretrained=True).pooling for k, p in backbones.items()}
    assert pooled == {"bert": "mean", "deberta": "mean", "llama": "last_token"}


def test_a_tokenizer_without_pad_token_pads_with_eos(backbones, workdir):
    m = text.Modality(_cfg(backbones["llama"]))
    assert m.tokenizer.pad_token == m.tokenizer.eos_token == "</s>"
    batch = _batch(m, ["great", "great song awful pizza beach"])
    assert batch["attention_mask"][0].tolist().count(0) > 0  # the short text was padded


def test_last_token_pooling_picks_the_last_real_token_under_left_and_right_padding(backbones, workdir):
    hidden = torch.arange(2 * 5, dtype=torch.float32).view(2, 5, 1).expand(2, 5, 3)
    pool = text_model.Pooling("last_token", 3)
    right = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    left = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    assert pool(hidden, right)[:, 0].tolist() == [2.0, 9.0]
    assert pool(hidden, left)[:, 0].tolist() == [4.0, 9.0]
    # the whole model: a text padded in a batch (either side) gives what it gives alone
    m = text.Modality(_cfg(backbones["llama"], "model.drop_rate=0"))
    model = m.build_model(3, pretrained=True).eval()
    with torch.no_grad():
        alone = model(_batch(m, ["great song"]))[0]
        for side in ("right", "left"):
            m.tokenizer.padding_side = side
            batch = _batch(m, ["great song", "a much longer text about the beach and the band"])
            assert (batch["attention_mask"][0] == 0).any()
            assert torch.allclose(model(batch)[0], alone, atol=1e-5), side


@pytest.mark.parametrize("family", ["bert", "deberta", "llama"])
@pytest.mark.parametrize("pooling", text_model.POOLINGS)
def test_every_pooling_runs_forward_and_backward(backbones, workdir, family, pooling):
    m = text.Modality(_cfg(backbones[family], f"model.pooling={pooling}", "model.pool_layers=2"))
    model = m.build_model(3, pretrained=True).train()
    out = model(_batch(m, ["great song", "awful pizza at the beach with the band"]))
    assert out.shape == (2, 3)
    out.sum().backward()
    grads = _grads(model)
    assert "head.weight" in grads and all(torch.isfinite(g).all() for g in grads.values())
    assert any(n.startswith("backbone.") and g.abs().sum() > 0 for n, g in grads.items())
    for name, p in model.head_pool.named_parameters():  # attention's scorer, weighted_layers' weights
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def _lora_setup(backbones, tmp_path, *more):
    cfg = _cfg(backbones["llama"], "lora.enabled=true", "train.lr=1e-2", "model.drop_rate=0", "lora.dropout=0",
               *more)
    m = text.Modality(cfg)
    model = m.build_model(3, pretrained=True)
    return cfg, m, model


def test_lora_trains_only_adapters_pooling_and_head(backbones, workdir, tmp_path):
    cfg, m, model = _lora_setup(backbones, tmp_path, "model.pooling=attention")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = optim.build_optimizer(model, cfg)
    model.train()
    model(_batch(m, ["great song", "awful pizza"])).pow(2).sum().backward()
    opt.step()
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all("lora_" in k or k.startswith(("head.", "head_pool.")) for k in changed), changed
    assert any("lora_" in k for k in changed) and "head.weight" in changed and "head_pool.score.weight" in changed
    # freeze_epochs ending must not unfreeze the base
    optim.set_backbone_trainable(model, True)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == \
        {n for n in dict(model.named_parameters()) if "lora_" in n or n.startswith("head")}


def test_lora_checkpoint_holds_adapters_and_head_and_reloads_to_the_same_predictions(backbones, workdir, tmp_path):
    cfg, m, model = _lora_setup(backbones, tmp_path)
    with torch.no_grad():  # adapters away from their zero init, so that losing them would show
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
    ckpt = tmp_path / "best.pt"
    checkpoints.save_weights(ckpt, model, epoch=1)
    state = torch.load(ckpt, weights_only=True)["model"]
    assert state and all("lora_" in k or k.startswith(("head.", "head_pool.")) for k in state)
    full = tmp_path / "full.pt"
    torch.save({"model": model.state_dict()}, full)
    assert ckpt.stat().st_size * 5 < full.stat().st_size

    assets = tmp_path / "backbone"
    m.save_assets(assets)  # tokenizer, config and the frozen base weights
    shutil.rmtree(tmp_path / "gone", ignore_errors=True)
    batch = _batch(m, ["great song", "awful pizza at the beach"])
    with torch.no_grad():
        want = model.eval()(batch)

    from accelerate import Accelerator
    label_map = LabelMap("multiclass", ["label"], classes=["a", "b", "c"])
    inference = text.Modality(cfg, assets)
    for merge in ("false", "true"):
        merged_cfg = config.load("demo", [f"model.name={backbones['llama']}", "lora.enabled=true",
                                          f"lora.merge={merge}", "infer.sort_by_length=false"])
        loaded = models.load_model(text.Modality(merged_cfg, assets), label_map, ckpt, Accelerator(cpu=True))
        assert any("lora_" in n for n, _ in loaded.named_parameters()) == (merge == "false")
        with torch.no_grad():
            got = loaded.eval()(batch)
        assert torch.allclose(got, want, atol=1e-5), merge
    assert inference.tokenizer.pad_token == m.tokenizer.pad_token



def stage(root: Path, name: str, *argv: str) -> None:
    with inside(root):
        assert run_cli(name, *argv) == 0, f"{name} {argv} failed"


@pytest.fixture(scope="module")
def lora_run(demo_dir, backbones, tmp_path_factory):
    """A scratch project with one LoRA run 'lora' on the tiny Llama: fold 0, 2 epochs, EMA, grad checkpointing
    and multi-sample dropout on; trained, predicted with two TTA views and submitted."""
    root = tmp_path_factory.mktemp("lora")
    shutil.copytree(PROJECT / "configs", root / "configs")
    args = [f"data.dir={demo_dir}", *TARGET_OVERRIDE, "train.progress=false", "report.auto=false",
            f"model.name={backbones['llama']}", "lora.enabled=true", "lora.r=4", "train.folds=[0]", "train.epochs=2",
            "train.lr=3e-3", "train.grad_checkpointing=true", "model.msd=2", "ema.enabled=true", "ema.decay=0.9"]
    with inside(root):
        like_demo("lora", "crash")
    for name in ("folds", "train"):
        stage(root, name, "--exp", "lora", *args)
    stage(root, "predict", "--exp", "lora", "tta.views=[identity,head_tail]")
    stage(root, "submit", "--exp", "lora")
    return root, args


def test_lora_train_predict_submit_end_to_end_on_a_tiny_llama(lora_run, demo_dir):
    root, args = lora_run
    run = root / "outputs" / "lora"
    state = torch.load(run / "fold0" / "best.pt", weights_only=True)["model"]
    assert state and all("lora_" in k or k.startswith("head") for k in state)
    assert list((run / "backbone").glob("*.safetensors"))  # the base, once per run
    sample = pd.read_csv(demo_dir / "sample_submission.csv", dtype=str)
    sub = pd.read_csv(root / "submissions" / "lora.csv", dtype=str)
    assert sub.columns.tolist() == sample.columns.tolist() and sub.iloc[:, 0].tolist() == sample.iloc[:, 0].tolist()
    assert not sub.isna().any().any()
    cv = json.loads((run / "cv.json").read_text())
    assert np.isfinite(cv["cv"])
    first = pd.read_csv(run / "test_preds.csv")
    # the adapters merged into the base predict the same test_preds
    stage(root, "predict", "--exp", "lora", "tta.views=[identity,head_tail]", "lora.merge=true")
    merged = pd.read_csv(run / "test_preds.csv")
    assert np.allclose(first.iloc[:, 1:].to_numpy(), merged.iloc[:, 1:].to_numpy(), atol=1e-5)
    stage(root, "predict", "--exp", "lora", "tta.views=[identity,head_tail]")  # back to make predict's own


def test_a_killed_lora_run_resumes_to_the_uninterrupted_result(lora_run):
    root, args = lora_run
    done = subprocess.run([sys.executable, str(PROJECT / "tests" / "crash_run.py"), "step", "2:2", "--exp", "crash",
                           *args], cwd=root, capture_output=True, text=True, timeout=900)
    assert done.returncode == 137, done.stderr[-3000:]
    last = root / "outputs" / "crash" / "fold0" / "last.pt"
    state = torch.load(last, weights_only=False)
    assert all("lora_" in k or k.startswith("head") for k in state["model"])  # no frozen base in resume points
    assert all("lora_" in k or k.startswith("head") for k in state["ema"]["module"])
    stage(root, "train", "--exp", "crash", *args, "--resume")
    got, want = (json.loads((root / "outputs" / e / "cv.json").read_text()) for e in ("crash", "lora"))
    assert got["cv"] == want["cv"] and got["folds"] == want["folds"]
    assert (root / "outputs/crash/oof_preds.csv").read_bytes() == (root / "outputs/lora/oof_preds.csv").read_bytes()


def test_lora_full_fit_pseudo_and_bundles_rebuild_the_base_from_the_run(lora_run, demo_dir, tmp_path):
    root, args = lora_run
    package, offline = mod("package"), mod("inference.offline")
    stage(root, "train", "--exp", "lora", *args, "train.full_fit=true", "train.seeds=[1]")
    stage(root, "predict", "--exp", "lora_full")
    stage(root, "pseudo", "--exp", "lora", "--name", "lora_ps", "pseudo.threshold=0.0",
          next(a for a in args if a.startswith("model.name=")))
    stage(root, "predict", "--exp", "lora_ps")
    for exp in ("lora", "lora_full", "lora_ps"):
        saved = yaml.safe_load((root / f"outputs/{exp}/config.yaml").read_text())
        saved["model"]["name"] = "some-org/a-model-not-on-this-machine"  # the bundle must never look for it
        (root / f"outputs/{exp}/config.yaml").write_text(yaml.safe_dump(saved, sort_keys=False))
        with inside(root):
            bundle = package.run(exp, [], name=f"b_{exp}")
            offline.predict_bundle(bundle, demo_dir, tmp_path / f"{exp}.csv", tmp_path / "work")
        ours = pd.read_csv(tmp_path / f"work/{exp}/test_preds.csv").iloc[:, 1:].to_numpy()
        theirs = pd.read_csv(root / f"outputs/{exp}/test_preds.csv").iloc[:, 1:].to_numpy()
        assert np.allclose(ours, theirs, atol=1e-6), exp
        for ckpt in bundle.rglob("*.pt"):
            assert all("lora_" in k or k.startswith("head") for k in torch.load(ckpt, weights_only=True)["model"])


@pytest.mark.parametrize("family,lora", [("bert", False), ("llama", False), ("llama", True)])
def test_grad_checkpointing_gives_the_same_gradients(backbones, workdir, family, lora):
    grads = []
    for ckpt in ("false", "true"):
        m = text.Modality(_cfg(backbones[family], f"train.grad_checkpointing={ckpt}", f"lora.enabled={lora}"))
        torch.manual_seed(0)
        model = m.build_model(3, pretrained=True).train()
        assert model.backbone.is_activation_checkpointing == (ckpt == "true")
        if lora:
            with torch.no_grad():
                for n, p in model.named_parameters():
                    if "lora_B" in n:
                        p.fill_(0.1)
        torch.manual_seed(1)  # the same dropout masks: checkpointing replays the RNG state
        model(_batch(m, ["great song", "awful pizza at the beach"])).pow(2).sum().backward()
        grads.append(_grads(model))
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 2
    for k in grads[0]:
        assert torch.allclose(grads[0][k], grads[1][k], atol=1e-6), k


def test_grad_checkpointing_is_refused_for_a_backbone_without_it(workdir, tmp_path, backbones):
    from transformers import XLNetConfig, XLNetModel

    out = tmp_path / "xlnet"
    shutil.copytree(backbones["bert"], out)
    (out / "config.json").unlink()
    XLNetModel(XLNetConfig(vocab_size=200, d_model=32, n_layer=1, n_head=2, d_inner=64)).save_pretrained(out)
    m = text.Modality(_cfg(out, "train.grad_checkpointing=true"))
    with pytest.raises(ConfigError, match="train.grad_checkpointing"):
        m.build_model(3, pretrained=True)


def test_multi_sample_dropout_averages_k_head_passes_in_training_and_one_in_eval(backbones, workdir):
    m = text.Modality(_cfg(backbones["bert"], "model.msd=4", "model.drop_rate=0.5"))
    model = m.build_model(3, pretrained=True).train()
    batch = _batch(m, ["great song", "awful pizza at the beach"])
    torch.manual_seed(3)
    out = model(batch)
    torch.manual_seed(3)  # the same draws, by hand: the backbone's dropout first, then K masks on its pooling
    hidden = model.backbone(**_inputs(batch))
    pooled = model.head_pool(hidden.last_hidden_state, batch["attention_mask"])
    passes = [model.head(model.dropout(pooled)) for _ in range(4)]
    assert torch.allclose(out, torch.stack(passes).mean(0), atol=1e-6)
    assert not torch.allclose(passes[0], passes[1])
    model.eval()
    with torch.no_grad():
        a, b = model(batch), model(batch)
        hidden = model.backbone(**_inputs(batch))
        single = model.head(model.head_pool(hidden.last_hidden_state, batch["attention_mask"]))
    assert torch.equal(a, b) and torch.allclose(a, single, atol=1e-6)


@pytest.mark.parametrize("family,n", [("bert", 1), ("deberta", 1), ("llama", 2)])
def test_reinit_changes_exactly_the_top_layers(backbones, workdir, family, n):
    plain = text.Modality(_cfg(backbones[family])).build_model(3, pretrained=True).backbone.state_dict()
    m = text.Modality(_cfg(backbones[family], f"model.reinit_layers={n}"))
    fresh = m.build_model(3, pretrained=True).backbone
    layers = text_model.layer_list(fresh)
    top = {f"{name}." for name, module in fresh.named_modules() if any(module is l for l in layers[len(layers) - n:])}
    changed = {k for k, v in fresh.state_dict().items() if not torch.equal(v, plain[k])}
    assert changed and all(k.startswith(tuple(top)) for k in changed), changed
    matrices = {k for k, v in fresh.state_dict().items() if k.startswith(tuple(top)) and v.ndim == 2}
    assert matrices <= changed  # every weight matrix of the top layers is new
    # random weights (model.pretrained=false, and inference) are never re-initialised
    assert text.Modality(_cfg(backbones[family], f"model.reinit_layers={n}")).build_model(3, pretrained=False)


def test_lora_with_random_weights_or_reinit_is_refused(backbones, workdir):
    with pytest.raises(ConfigError, match="lora.enabled"):
        _cfg(backbones["llama"], "lora.enabled=true", "model.pretrained=false")
    with pytest.raises(ConfigError, match="model.reinit_layers"):
        _cfg(backbones["llama"], "lora.enabled=true", "model.reinit_layers=1")
    with pytest.raises(ConfigError, match="lora.target_modules"):
        text.Modality(_cfg(backbones["llama"], "lora.enabled=true", "lora.target_modules=[nope]")).build_model(
            3, pretrained=True)
