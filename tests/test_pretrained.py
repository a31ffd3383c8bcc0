"""The weights shipped in the package: safetensors, safe loading, the default of the CLIs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

import stno
from stno.io.checkpoint import (
    CheckpointError,
    load_network,
    network_for,
    save_network_checkpoint,
    save_safetensors,
    shipped_weights,
)
from stno.nn import STNO

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def small_net() -> STNO:
    torch.manual_seed(0)
    return STNO(
        channels=8,
        num_blocks=1,
        pyramid_channels=(8, 8, 8),
        attn_dim=8,
        heads=2,
        decoder_widths=(8, 8, 8),
        residual_channels=3,
        decoder_hidden=16,
        image_residual=True,
    ).eval()


def test_shipped_weights_load_without_pickle_and_give_finite_outputs():
    path = shipped_weights()
    assert path is not None and path.suffix == ".safetensors"
    assert path.stat().st_size < 12e6  # small enough to ship inside the wheel
    card = path.parent / "README.md"
    assert "CC BY 4.0" in card.read_text()  # the training data's attribution travels with it
    config = json.loads((path.parent / "config.json").read_text())
    net, info = stno.load_pretrained()
    assert info["preset"] == config["preset"] and not net.training
    frames = torch.rand(1, 2, 3, 20, 28)
    with torch.no_grad():
        out = net(frames, [0.5], (50, 70))
    assert out.shape == (1, 3, 3, 50, 70) and torch.isfinite(out).all()


def test_safetensors_round_trip_rebuilds_the_same_network(tmp_path):
    net = small_net()
    path = save_safetensors(net, tmp_path / "w.safetensors", preset="custom", global_step=7)
    loaded, info = load_network(path)
    assert info["preset"] == "custom" and info["global_step"] == 7
    frames = torch.rand(1, 2, 3, 9, 13)
    with torch.no_grad():
        torch.testing.assert_close(loaded(frames, [0.5], (20, 30)), net(frames, [0.5], (20, 30)))
    # a .ckpt and its safetensors export give the same network
    ckpt = save_network_checkpoint(net, tmp_path / "w.ckpt", preset="custom")
    via_ckpt, _ = network_for(None, ckpt)
    via_file, _ = network_for(None, path)
    with torch.no_grad():
        torch.testing.assert_close(
            via_ckpt(frames, [0.5], (20, 30)), via_file(frames, [0.5], (20, 30))
        )


def test_foreign_safetensors_file_is_a_clear_error(tmp_path):
    from safetensors.torch import save_file

    save_file({"weight": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(CheckpointError, match="no STNO config"):
        load_network(tmp_path / "other.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file at all")
    with pytest.raises(CheckpointError, match="not a readable safetensors file"):
        load_network(tmp_path / "junk.safetensors")


def test_no_checkpoint_means_the_shipped_model_and_other_presets_need_one():
    net, info = network_for(None, None)
    assert info["shipped"] and info["path"] == str(shipped_weights())
    with pytest.raises(CheckpointError, match="no weights ship for preset=stno_base"):
        network_for("stno_base", None)


def test_stno_infer_without_a_checkpoint_uses_the_shipped_weights(tmp_path):
    from data_helpers import moving_square, write_test_video

    video = write_test_video(tmp_path / "in.mp4", moving_square(4, 24, 32))
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "stno.cli.infer",
            f"input={video}",
            f"output={tmp_path / 'out.mp4'}",
            "space_scale=2",
            "progress=false",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert completed.returncode == 0, completed.stderr
    assert "the shipped weights" in completed.stdout
    assert (tmp_path / "out.mp4").is_file()
