"""Checkpoint loading: safe (weights_only), strict, and clear about what does not fit."""

from __future__ import annotations

import copy

import pytest
import torch
from omegaconf import OmegaConf

from stno.io.checkpoint import CheckpointError, load_network, network_for, save_network_checkpoint
from stno.io.configs import config_dir
from stno.nn import STNO, BicubicBlend

# tiny tensors: one torch thread is faster, and much faster on a busy machine
pytestmark = pytest.mark.usefixtures("one_torch_thread")


def preset_net_config(preset: str) -> dict:
    config = OmegaConf.load(config_dir() / "model" / f"{preset}.yaml")
    return OmegaConf.to_container(config.net, resolve=True)


def tiny_net(seed: int = 0) -> STNO:
    torch.manual_seed(seed)
    config = {k: v for k, v in preset_net_config("stno_tiny").items() if k != "_target_"}
    return STNO(**config)


def run_net(net, seed: int = 1) -> torch.Tensor:
    frames = torch.rand(1, 2, 3, 9, 11, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return net(frames, [0.5], (18, 22))


def test_round_trip_gives_the_same_network(tmp_path):
    net = tiny_net().eval()
    path = save_network_checkpoint(net, tmp_path / "tiny.ckpt", preset="stno_tiny")
    loaded, info = load_network(path, expected="stno_tiny")
    assert isinstance(loaded, STNO) and not loaded.training
    assert info["preset"] == "stno_tiny" and info["weights"] == "net"
    assert info["num_parameters"] == sum(p.numel() for p in net.parameters())
    assert torch.equal(run_net(loaded), run_net(net))
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left


def test_ema_weights_are_preferred_when_present(tmp_path):
    net = tiny_net(0)
    ema = copy.deepcopy(net)
    with torch.no_grad():
        for parameter in ema.parameters():
            parameter.add_(0.01)
    path = save_network_checkpoint(net, tmp_path / "ema.ckpt", preset="stno_tiny", ema=ema)
    with_ema, info = load_network(path)
    without_ema, info_raw = load_network(path, use_ema=False)
    assert info["weights"] == "ema" and info_raw["weights"] == "net"
    first = next(iter(with_ema.state_dict()))
    assert torch.equal(with_ema.state_dict()[first], ema.state_dict()[first])
    assert torch.equal(without_ema.state_dict()[first], net.state_dict()[first])


def test_other_preset_is_named_in_the_error(tmp_path):
    path = save_network_checkpoint(tiny_net(), tmp_path / "tiny.ckpt", preset="stno_tiny")
    with pytest.raises(CheckpointError, match="stno_base.*stno_tiny"):
        load_network(path, expected="stno_base")
    with pytest.raises(CheckpointError, match="channels=64.*checkpoint: 32"):
        load_network(path, expected=preset_net_config("stno_base"))


def test_weights_of_another_shape_are_rejected(tmp_path):
    net = tiny_net()
    checkpoint = {
        "state_dict": {f"net.{k}": v for k, v in net.state_dict().items()},
        "hyper_parameters": {
            "net": {**preset_net_config("stno_tiny"), "channels": 16},
            "preset": "stno_tiny",
        },
    }
    torch.save(checkpoint, tmp_path / "bad.ckpt")
    with pytest.raises(CheckpointError, match="do not fit.*stno_tiny.*shape"):
        load_network(tmp_path / "bad.ckpt")
    checkpoint["hyper_parameters"]["net"]["channels"] = 32
    del checkpoint["state_dict"][next(iter(checkpoint["state_dict"]))]
    torch.save(checkpoint, tmp_path / "missing.ckpt")
    with pytest.raises(CheckpointError, match="missing 1 weights"):
        load_network(tmp_path / "missing.ckpt")


def test_bad_files_give_one_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        load_network(tmp_path / "nope.ckpt")
    (tmp_path / "empty.ckpt").write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty file"):
        load_network(tmp_path / "empty.ckpt")
    (tmp_path / "text.ckpt").write_text("not a checkpoint at all")
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        load_network(tmp_path / "text.ckpt")
    good = save_network_checkpoint(tiny_net(), tmp_path / "good.ckpt", preset="stno_tiny")
    (tmp_path / "truncated.ckpt").write_bytes(good.read_bytes()[:2000])
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        load_network(tmp_path / "truncated.ckpt")
    torch.save({"model": torch.zeros(2)}, tmp_path / "other.ckpt")
    with pytest.raises(CheckpointError, match="not an STNO checkpoint"):
        load_network(tmp_path / "other.ckpt")


class Payload:
    """An arbitrary class: safe loading must refuse to unpickle it."""


def test_checkpoints_with_code_or_foreign_targets_are_refused(tmp_path):
    torch.save({"state_dict": {}, "hyper_parameters": {"net": Payload()}}, tmp_path / "code.ckpt")
    with pytest.raises(CheckpointError, match="safe .*weights_only.* loading refuses"):
        load_network(tmp_path / "code.ckpt")
    torch.save(
        {
            "state_dict": {},
            "hyper_parameters": {"net": {"_target_": "os.system", "command": "true"}},
        },
        tmp_path / "target.ckpt",
    )
    with pytest.raises(CheckpointError, match="'os.system', not an STNO network"):
        load_network(tmp_path / "target.ckpt")


@pytest.mark.slow  # importing pytorch_lightning takes most of its ~10 s
def test_lightning_module_checkpoint_layout_loads(tmp_path):
    """A checkpoint laid out as STNOLitModule writes it (net., ema., hyper_parameters) loads."""
    from stno.lit import STNOLitModule

    module = STNOLitModule(net=preset_net_config("stno_tiny"), preset="stno_tiny", ema_decay=0.99)
    checkpoint = {
        "state_dict": module.state_dict(),
        "hyper_parameters": dict(module.hparams),
        "epoch": 3,
    }
    torch.save(checkpoint, tmp_path / "lit.ckpt")
    net, info = load_network(tmp_path / "lit.ckpt", expected="stno_tiny")
    assert info["weights"] == "ema" and info["epoch"] == 3
    assert torch.equal(run_net(net), run_net(module.ema.eval()))


def test_baseline_needs_no_checkpoint_and_presets_without_shipped_weights_do(tmp_path):
    net, info = network_for("bicubic_blend", None)
    assert isinstance(net, BicubicBlend) and info["preset"] == "bicubic_blend"
    with pytest.raises(CheckpointError, match="give ckpt_path="):
        network_for("stno_base", None)
