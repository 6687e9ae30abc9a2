"""Image inputs: unusable files are listed before training, any mode decodes to RGB, local weights load."""
import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from helpers import like_demo, mod, run_cli

config, image = mod("core.config"), mod("modality.image")


def _train_fails(data_dir, tiny, capsys, workdir) -> str:
    code = run_cli("train", "--exp", "bad", *tiny, f"data.dir={data_dir}")
    err = capsys.readouterr().err
    assert code == 2, err
    assert not (workdir / "outputs" / "bad").exists()
    return err


@pytest.mark.parametrize("damage, why", [
    (lambda p: p.unlink(), "missing"),
    (lambda p: p.write_bytes(b""), "zero bytes"),
    (lambda p: p.write_bytes(b"this is not a png"), "does not decode"),
    (lambda p: p.write_bytes(p.read_bytes()[:60]), "does not decode"),  # truncated
    (lambda p: Image.open(p).convert("RGB").save(p, format="TGA"), "format OpenCV cannot read"),  # PIL can
])
def test_unusable_image_is_named_with_its_line_before_training(data_copy, tiny, capsys, workdir, damage, why):
    victim = sorted((data_copy / "images").glob("*.png"))[-1]  # a train image (test takes the first rows)
    damage(victim)
    err = _train_fails(data_copy, tiny, capsys, workdir)
    assert victim.name in err and why in err and "line " in err


def test_a_broken_test_image_stops_predict_before_inference(data_copy, tiny, workdir, capsys):
    """Never skipped: a test row without a prediction would misalign the submission's ids."""
    like_demo("pr")
    assert run_cli("train", "--exp", "pr", *tiny, f"data.dir={data_copy}", "train.folds=[0]", "train.epochs=1") == 0
    victim = data_copy / pd.read_csv(data_copy / "test.csv")["image"].iloc[1]
    victim.write_bytes(victim.read_bytes()[:60])
    assert run_cli("predict", "--exp", "pr") == 2
    err = capsys.readouterr().err
    assert "test.csv" in err and "line 3" in err and victim.name in err and "does not decode" in err
    assert not (workdir / "outputs" / "pr" / "test_preds.csv").exists()


@pytest.mark.parametrize("mode", ["L", "RGBA", "CMYK", "P"])
def test_every_image_mode_decodes_to_three_channel_rgb(tmp_path, mode):
    rgb = np.random.default_rng(0).integers(0, 255, (12, 10, 3), dtype=np.uint8)
    img = Image.fromarray(rgb).convert(mode)
    path = tmp_path / ("x.jpg" if mode == "CMYK" else "x.png")
    img.save(path)
    out = image.read_image(str(path))
    assert out.shape == (12, 10, 3) and out.dtype == np.uint8
    if mode == "L":
        assert (out[..., 0] == out[..., 1]).all()


def test_local_weights_file_is_loaded_without_the_hub(workdir, tmp_path):
    cfg = config.load("demo", ["model.pretrained=true"])
    mod_ = image.Modality(cfg)
    reference = mod_.build_model(10, pretrained=False)
    weights = tmp_path / "weights.pth"
    torch.save(reference.net.state_dict(), weights)
    cfg = config.load("demo", ["model.pretrained=true", f"model.weights={weights}"])
    loaded = image.Modality(cfg).build_model(10, pretrained=True)
    head = loaded.net.pretrained_cfg["classifier"]  # timm re-initialises the head for a new class count
    body = {k: v for k, v in reference.net.state_dict().items() if not k.startswith(head)}
    assert body, "nothing but the head was compared"
    for name, value in body.items():
        assert torch.equal(value, loaded.net.state_dict()[name]), name


def test_unknown_augmentation_names_its_position(workdir):
    cfg = config.load("demo", ["aug.train=[{name: HorizontalFlip}, {name: NoSuchTransform}]"])
    with pytest.raises(config.ConfigError, match=r"aug.train\[1\].*NoSuchTransform"):
        image.Modality(cfg)


def test_training_transforms_augment_and_validation_transforms_do_not(workdir):
    cfg = config.load("demo", ["aug.train=[{name: HorizontalFlip, p: 1.0}]", "data.image_size=8"])
    m = image.Modality(cfg)
    x = np.zeros((8, 8, 3), np.uint8)
    x[:, :4] = 255
    train = m.transform(train=True)(image=x)["image"]
    valid = m.transform(train=False)(image=x)["image"]
    assert np.allclose(train[:, ::-1], valid)


def _left_bright(side: int = 16) -> np.ndarray:
    x = np.zeros((side, side, 3), np.uint8)
    x[:, : side // 2] = 255
    return x


def _mirrored_share(cfg, draws: int = 60) -> float:
    """Share of augmented draws of a left-bright image whose right half came out brighter (a mirror)."""
    t = image.Modality(cfg).transform(train=True)
    t.set_random_seed(0)
    flips = 0
    for _ in range(draws):
        out = t(image=_left_bright())["image"].mean(axis=(0, 2))
        flips += out[8:].mean() > out[:8].mean()
    return flips / draws


def test_the_default_light_preset_never_mirrors_and_medium_does(workdir):
    """light is the default because it keeps the label of any image (a mirrored 'b' is a 'd'); photos
    choose medium, whose horizontal flip mirrors about half of the draws."""
    light = config.load("demo", ["aug.train=preset", "data.image_size=16"])
    assert light.aug.preset == "light"
    assert _mirrored_share(light) == 0.0
    assert 0.3 < _mirrored_share(config.load("demo", ["aug.train=preset", "aug.preset=medium",
                                                       "data.image_size=16"])) < 0.7


@pytest.mark.parametrize("preset", ["none", "light", "medium", "heavy"])
def test_every_preset_builds_and_keeps_the_image_size(workdir, preset):
    cfg = config.load("demo", ["aug.train=preset", f"aug.preset={preset}", "data.image_size=24"])
    t = image.Modality(cfg).transform(train=True)
    out = t(image=np.random.default_rng(0).integers(0, 255, (40, 30, 3), dtype=np.uint8))["image"]
    assert out.shape == (24, 24, 3)
    lines = mod("modality.augment").describe(cfg.aug, 24)
    assert lines[0].endswith(":") == (preset != "none") and all("assumes" in x for x in lines[1:])


def test_an_explicit_aug_train_list_wins_over_the_preset(workdir):
    cfg = config.load("demo", ["aug.train=[]", "aug.preset=heavy", "data.image_size=8"])
    m = image.Modality(cfg)
    x = _left_bright(8)
    assert np.array_equal(m.transform(train=True)(image=x)["image"], m.transform(train=False)(image=x)["image"])
    with pytest.raises(config.ConfigError, match=r"aug.train.*preset"):
        config.load("demo", ["aug.train=presets"])
    with pytest.raises(config.ConfigError, match=r"aug.preset.*none, light, medium, heavy"):
        config.load("demo", ["aug.preset=strong"])
