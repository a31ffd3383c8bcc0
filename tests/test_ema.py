"""The EMA callback (`EMAWeights`, switched on by `model.ema_decay`): the average lives under
`ema.` in the module's state_dict and checkpoints, validation runs with it without leaking it
into the saved live weights, resumed runs continue it exactly, and checkpoints written before
it was a callback still resume and evaluate."""

from __future__ import annotations

from pathlib import Path

import hydra
import pytest
import pytorch_lightning as pl
import torch
from test_checkpoint import preset_net_config
from test_resume_exact import _assert_same_weights, _overrides, _weights
from test_train import TINY_DATA

from stno.cli.train import train
from stno.io.checkpoint import load_network
from stno.lit import STNOLitModule
from stno.lit.callbacks import EMAWeights
from stno.lit.run import instantiate_model

EMA_ON = ["trainer=cpu", "model.ema_decay=0.9"]


def _module(ema_decay: float | None = 0.9) -> STNOLitModule:
    return STNOLitModule(net=preset_net_config("stno_tiny"), ema_decay=ema_decay)


def _prefixed(state_dict: dict, prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)}


def _ema_callback(module: STNOLitModule) -> EMAWeights:
    (callback,) = [c for c in module.configure_callbacks() if isinstance(c, EMAWeights)]
    return callback


def _expected_average(average: dict, net: dict, step: int, decay: float = 0.9) -> dict:
    """One update of the average at `step` (with the callback's warm-up; STNO has no buffers)."""
    weight = 1.0 - min(decay, (1.0 + step) / (10.0 + step))
    return {key: value.lerp(net[key], weight) for key, value in average.items()}


def test_the_average_goes_with_the_module_state_dict():
    module = _module()
    with torch.no_grad():
        for parameter in module.ema.parameters():
            parameter.add_(0.5)
    state = module.state_dict()
    assert (
        set(_prefixed(state, "ema."))
        == set(_prefixed(state, "net."))
        == set(module.net.state_dict())
    )
    assert not any(key.split(".")[0] not in ("net", "ema") for key in state)

    restored = _module()
    restored.load_state_dict(state)  # strict
    _assert_same_weights(restored.ema.state_dict(), module.ema.state_dict())
    # Non-strict loading (how spawned DDP processes send their weights back) also takes it.
    spawned = _module()
    spawned.load_state_dict(state, strict=False)
    _assert_same_weights(spawned.ema.state_dict(), module.ema.state_dict())
    # Weights without an average load too (the average then starts from them with training).
    _module().load_state_dict({k: v for k, v in state.items() if k.startswith("net.")})
    # Without EMA an average is an unexpected key, as before.
    with pytest.raises(RuntimeError, match="Unexpected key.*ema\\."):
        _module(ema_decay=None).load_state_dict(state)
    assert _module(ema_decay=None).ema is None


def test_validation_runs_with_the_average_and_saves_the_live_weights():
    module = _module()
    callback = _ema_callback(module)
    live = {k: v.clone() for k, v in module.net.state_dict().items()}
    with torch.no_grad():
        for parameter in module.ema.parameters():
            parameter.add_(0.5)
    callback._started = True  # as after a restore: keep this average
    average = {k: v.clone() for k, v in module.ema.state_dict().items()}

    callback.on_validation_start(None, module)
    _assert_same_weights(module.net.state_dict(), average)
    state = module.state_dict()  # e.g. ModelCheckpoint saving at validation end
    _assert_same_weights(_prefixed(state, "net."), live)
    _assert_same_weights(_prefixed(state, "ema."), average)
    callback.on_validation_end(None, module)
    _assert_same_weights(module.net.state_dict(), live)


def test_a_fit_starts_the_average_from_the_weights_loaded_into_net(train_config):
    """Fine-tuning: weights loaded into `model.net` before `fit` are where the average starts."""
    cfg = train_config(["model.ema_decay=0.9", *TINY_DATA])
    model = instantiate_model(cfg.model, hydra.utils.instantiate)
    datamodule = hydra.utils.instantiate(cfg.data)
    with torch.no_grad():  # "init_ckpt" weights, unlike those the average was built from
        for parameter in model.net.parameters():
            parameter.mul_(0.5)
    initial = {k: v.clone() for k, v in model.net.state_dict().items()}
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=1,
    )
    trainer.fit(model, datamodule=datamodule)
    trained = model.net.state_dict()
    assert any(not torch.equal(trained[key], initial[key]) for key in initial)
    _assert_same_weights(model.ema.state_dict(), _expected_average(initial, trained, step=1))


def test_ema_run_stopped_and_resumed_matches_an_uninterrupted_one(train_config, tmp_path):
    ema = [*EMA_ON, "model.scheduler.T_max=6", "callbacks.best_checkpoint.save_top_k=-1"]
    uninterrupted, resumed = tmp_path / "uninterrupted", tmp_path / "resumed"
    train(train_config(_overrides(6, every=2, val_every=2) + ema, output_dir=uninterrupted))
    train(train_config(_overrides(4, every=2, val_every=2) + ema, output_dir=resumed))
    assert _weights(resumed)[0] == 4
    train(train_config(_overrides(6, every=2, val_every=2) + ema, output_dir=resumed))
    (step_a, weights_a), (step_b, weights_b) = _weights(uninterrupted), _weights(resumed)
    assert step_a == step_b == 6
    _assert_same_weights(weights_a, weights_b)
    net, average = _prefixed(weights_a, "net."), _prefixed(weights_a, "ema.")
    assert net.keys() == average.keys()
    assert any(not torch.equal(net[k], average[k]) for k in net)
    # The checkpoint saved at the end of the validation of step 6 holds the same live weights
    # and average as last.ckpt, saved after that training step (before validation).
    (best,) = (uninterrupted / "checkpoints").glob("best-step0000006-*.ckpt")
    _assert_same_weights(torch.load(best, weights_only=True)["state_dict"], weights_a)


def _old_format_checkpoint(train_config, run_dir: Path) -> Path:
    """The last.ckpt of a run in `run_dir`, laid out as `STNOLitModule` wrote it when it kept the
    average itself (`ema.` next to `net.` in state_dict, `ema_decay` in hyper_parameters, no
    callback state), with an average that differs from the weights."""
    train(train_config(_overrides(2, every=2) + EMA_ON, output_dir=run_dir))
    path = run_dir / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(path, weights_only=True)
    assert not any("EMA" in key for key in checkpoint["callbacks"])
    assert checkpoint["hyper_parameters"]["ema_decay"] == 0.9
    state = checkpoint["state_dict"]
    for key in list(state):
        if key.startswith("ema.") and state[key].is_floating_point():
            state[key] = state["net." + key[4:]] + 0.01
    torch.save(checkpoint, path)
    return path


def test_a_checkpoint_of_the_old_layout_resumes_and_evaluates(train_config, tmp_path):
    path = _old_format_checkpoint(train_config, tmp_path / "old")
    old = torch.load(path, weights_only=True)["state_dict"]

    # Evaluation and inference take its average.
    net, info = load_network(path)
    assert info["weights"] == "ema"
    _assert_same_weights(net.state_dict(), _prefixed(old, "ema."))
    # So does the validation of `stno-train train=false`: the same score as a checkpoint that
    # holds the average as its only weights.
    averaged_only = tmp_path / "averaged_only.ckpt"
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["state_dict"] = {"net." + k: v for k, v in _prefixed(old, "ema.").items()}
    checkpoint["hyper_parameters"]["ema_decay"] = None
    torch.save(checkpoint, averaged_only)
    validate = ["train=false", "trainer.limit_val_batches=1", *TINY_DATA]
    with_ema = train(train_config([*validate, *EMA_ON, f"ckpt_path={path}"], tmp_path / "v1"))
    plain = train(
        train_config([*validate, "trainer=cpu", f"ckpt_path={averaged_only}"], tmp_path / "v2")
    )
    assert with_ema["val/psnr_y"] == pytest.approx(plain["val/psnr_y"], abs=1e-6)

    # Resuming continues its average (not one restarted from the weights).
    train(train_config(_overrides(3, every=1) + EMA_ON, output_dir=path.parent.parent))
    step, resumed = _weights(path.parent.parent)
    assert step == 3
    expected = _expected_average(_prefixed(old, "ema."), _prefixed(resumed, "net."), step=3)
    _assert_same_weights(_prefixed(resumed, "ema."), expected)
