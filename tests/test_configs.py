"""Every config in conf/ composes and resolves; every experiment instantiates its model and data."""

from __future__ import annotations

import importlib.util

import hydra
import pytest
import torch
from omegaconf import OmegaConf

from stno.io.configs import config_dir
from stno.lit.run import instantiate_group, instantiate_model

# The groups train.yaml composes; their files are found on disk so a new one is tested too.
TRAIN_GROUPS = (
    "model",
    "data",
    "trainer",
    "callbacks",
    "logger",
    "experiment",
    "debug",
    "hparams_search",
)
GROUPS = {
    group: sorted(path.stem for path in (config_dir() / group).glob("*.yaml"))
    for group in TRAIN_GROUPS
}
# Values the user must give (`???`) for some options.
REQUIRED = {
    ("data", "frames"): ["data.root=/nowhere"],
    ("data", "video"): ["data.root=/nowhere.mp4"],
    ("data", "videos"): ["data.root=/nowhere"],
    ("experiment", "release"): ["data.root=/nowhere"],
}


def _has_optuna_sweeper() -> bool:
    try:
        return importlib.util.find_spec("hydra_plugins.hydra_optuna_sweeper") is not None
    except ModuleNotFoundError:
        return False


HAS_OPTUNA_SWEEPER = _has_optuna_sweeper()


def test_config_dir_is_the_source_checkout_conf():
    directory = config_dir()
    assert (directory / "train.yaml").is_file()
    assert {"model", "data", "trainer", "callbacks", "logger", "experiment", "debug"} <= set(GROUPS)


def test_groups_have_the_documented_options():
    assert {"stno_base", "stno_tiny", "bicubic_blend"} <= set(GROUPS["model"])
    assert {"sample", "frames", "video", "vimeo_septuplet", "adobe240"} <= set(GROUPS["data"])
    assert {"default", "cpu", "gpu", "ddp"} <= set(GROUPS["trainer"])
    assert {"csv", "tensorboard", "wandb"} <= set(GROUPS["logger"])
    assert {"quickstart", "vimeo_x4x2", "adobe_continuous"} <= set(GROUPS["experiment"])
    assert {"fdr", "overfit", "limit"} <= set(GROUPS["debug"])
    assert "lr_optuna" in GROUPS["hparams_search"]


@pytest.mark.parametrize(
    "group, option", [(group, option) for group, options in GROUPS.items() for option in options]
)
def test_every_option_composes_and_resolves(train_config, group, option):
    if group == "hparams_search" and not HAS_OPTUNA_SWEEPER:
        pytest.skip("hydra-optuna-sweeper not installed (pip install -e '.[sweep]')")
    cfg = train_config([f"{group}={option}", *REQUIRED.get((group, option), [])])
    resolved = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    assert resolved["optimized_metric"] == "val/psnr_y"
    assert resolved["model"]["_target_"] == "stno.lit.STNOLitModule"
    assert resolved["model"]["net"]["_target_"].startswith("stno.nn.")
    assert resolved["trainer"]["_target_"] == "pytorch_lightning.Trainer"


def test_model_configs_share_the_training_recipe(train_config):
    for preset in ("stno_base", "stno_tiny"):
        model = train_config([f"model={preset}"]).model
        assert model.preset == preset
        assert model.loss_eps == pytest.approx(1e-3)
        assert model.optimizer._target_ == "torch.optim.Adam" and model.optimizer._partial_
        assert model.scheduler._target_.endswith("CosineAnnealingLR") and model.scheduler._partial_


def test_defaults_train_stno_tiny_on_the_embedded_sample(train_config):
    cfg = train_config()
    assert cfg.model.preset == "stno_tiny"
    assert cfg.data.source.path._target_ == "stno.data.sample_video_path"
    assert cfg.logger.csv._target_.endswith("CSVLogger")
    assert cfg.callbacks.best_checkpoint.monitor == "val/psnr_y"


def test_experiments_override_only_what_differs(train_config):
    base = OmegaConf.to_container(train_config(), resolve=True)
    quick = OmegaConf.to_container(train_config(["experiment=quickstart"]), resolve=True)
    # The quickstart keeps the default model and data; it only changes the trainer and run length.
    assert quick["model"] == base["model"] | {"scheduler": quick["model"]["scheduler"]}
    assert quick["data"] == base["data"]
    assert quick["trainer"]["accelerator"] == "cpu"


def _instantiate_experiment(train_config, tmp_path, overrides):
    cfg = train_config(overrides, output_dir=tmp_path / "run")
    datamodule = hydra.utils.instantiate(cfg.data)
    model = instantiate_model(cfg.model, hydra.utils.instantiate)
    callbacks = instantiate_group(cfg.callbacks, hydra.utils.instantiate)
    trainer = hydra.utils.instantiate(
        cfg.trainer,
        callbacks=callbacks,
        logger=False,
        accelerator="cpu",
        devices=1,
        precision="32-true",
    )
    datamodule.setup("fit")
    return cfg, datamodule, model, trainer


def _first_batch(loader):
    return next(iter(loader))


def test_quickstart_instantiates_model_and_data(train_config, tmp_path):
    cfg, datamodule, model, trainer = _instantiate_experiment(
        train_config, tmp_path, ["experiment=quickstart"]
    )
    assert model.hparams.preset == "stno_tiny"
    batch = _first_batch(datamodule.train_dataloader())
    assert batch["lr"].shape == (4, 4, 3, 16, 16)
    assert batch["hr"].shape == (4, 7, 3, 64, 64)
    assert trainer.max_steps == cfg.trainer.max_steps


def test_vimeo_x4x2_instantiates_model_and_data(train_config, tmp_path, tiny_vimeo_root):
    cfg, datamodule, model, _ = _instantiate_experiment(
        train_config,
        tmp_path,
        [
            "experiment=vimeo_x4x2",
            f"data.root={tiny_vimeo_root}",
            "data.batch_size=2",
            "data.num_workers=0",
        ],
    )
    assert model.hparams.preset == "stno_base"
    parameters = sum(p.numel() for p in model.net.parameters())
    assert abs(parameters - 9.37e6) / 9.37e6 < 0.05
    assert cfg.trainer.precision == "bf16-mixed"
    train_batch = _first_batch(datamodule.train_dataloader())
    assert train_batch["lr"].shape == (2, 4, 3, 32, 32) and train_batch["hr"].shape == (
        2,
        7,
        3,
        128,
        128,
    )
    val_batch = _first_batch(datamodule.val_dataloader())
    # Whole 160x128 frames: LR 40x32, all seven targets.
    assert val_batch["lr"].shape[1:] == (4, 3, 32, 40) and val_batch["hr"].shape[1:] == (
        7,
        3,
        128,
        160,
    )
    assert torch.equal(val_batch["times"], torch.tensor([0.5]))


def test_adobe_continuous_instantiates_model_and_data(train_config, tmp_path, tiny_adobe_root):
    _, datamodule, model, _ = _instantiate_experiment(
        train_config,
        tmp_path,
        [
            "experiment=adobe_continuous",
            f"data.root={tiny_adobe_root}",
            "data.batch_size=2",
            "data.num_workers=0",
        ],
    )
    assert model.hparams.preset == "stno_base"
    train_batch = _first_batch(datamodule.train_dataloader())
    assert train_batch["lr"].shape == (2, 2, 3, 32, 32)
    scale = train_batch["scale"]
    assert 1.0 <= scale <= 4.0
    assert train_batch["hr"].shape[1] == 3 and train_batch["hr"].shape[-1] == round(32 * scale)
    val_batch = _first_batch(datamodule.val_dataloader())
    assert val_batch["hr"].shape[1:] == (9, 3, 256, 256) and val_batch["lr"].shape[1:] == (
        2,
        3,
        64,
        64,
    )
    assert torch.allclose(val_batch["times"], torch.arange(1, 8) / 8)


def test_frames_and_video_data_configs_build_from_a_root(train_config, tmp_path, tiny_frames_root):
    cfg = train_config(
        [
            "data=frames",
            f"data.root={tiny_frames_root}",
            "data.train_dataset.lr_patch=8",
            "data.val_dataset.lr_patch=8",
        ]
    )
    datamodule = hydra.utils.instantiate(cfg.data)
    datamodule.setup("fit")
    batch = _first_batch(datamodule.train_dataloader())
    assert batch["lr"].shape == (4, 4, 3, 8, 8) and batch["hr"].shape == (4, 7, 3, 32, 32)
