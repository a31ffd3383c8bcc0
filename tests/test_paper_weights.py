"""The paper's released weights: `stno-convert` and the `stno_paper` preset reproduce the
reference code (hahazh/STVSR-NO) output, checked against the fixture in tests/data/stno_paper."""

from __future__ import annotations

import argparse

import numpy as np
import paper_reference as fixture
import pytest
import torch
from omegaconf import OmegaConf

from stno.cli.convert import main
from stno.io.checkpoint import load_network, save_network_checkpoint
from stno.io.configs import config_dir
from stno.io.paper import (
    ConversionError,
    convert_state_dict,
    paper_net_config,
    read_reference_state_dict,
)
from stno.nn import STNO

SWITCHES = {
    "head_norm_unbiased": True,
    "linspace_coords": True,
    "reference_attention_wiring": True,
    "pair_centring": True,
    "synthesis_prelu": True,
    "flows_at_t": True,
    "reflect_padding": True,
    "clamp_output": False,
}
# Cases run by default; the rest are marked slow (each takes seconds on two CPU threads).
QUICK = {"T2_t0.25_x2.5", "T3_t0.75_x2.5"}


def _net_config(preset: str) -> dict:
    config = OmegaConf.load(config_dir() / "model" / f"{preset}.yaml")
    return OmegaConf.to_container(config.net, resolve=True)


@pytest.fixture(scope="module")
def stored():
    return fixture.load_outputs()


@pytest.fixture(scope="module")
def converted():
    """The fixture's weights converted, and in the variant with negative head slopes."""
    return {
        negative: convert_state_dict(fixture.reference_weights(negative_head=negative))
        for negative in (False, True)
    }


def test_the_fixture_stays_small():
    sizes = [path.stat().st_size for path in fixture.FIXTURE_DIR.iterdir() if path.is_file()]
    assert sum(sizes) < 80_000


def test_every_reference_tensor_finds_its_place_in_stno_paper(converted):
    shapes = fixture.reference_shapes()
    assert len(shapes) == 465 and sum(int(np.prod(s)) for s in shapes.values()) == 9_368_146
    conversion = converted[False]
    assert conversion.unplaced == [] and not conversion.synthesis_prelu
    assert any("folded" in note for note in conversion.notes)
    net = STNO(**{k: v for k, v in paper_net_config().items() if k != "_target_"})
    own = net.state_dict()
    assert set(conversion.state_dict) == set(own)  # 464: the head's PReLU is folded
    for key, value in conversion.state_dict.items():
        assert tuple(value.shape) == tuple(own[key].shape), key
    # stno_base has the same weights as stno_paper: the reference minus the head's 3 slopes
    assert sum(p.numel() for p in net.parameters()) == 9_368_146 - 3


def test_negative_head_slopes_keep_the_prelu(converted):
    conversion = converted[True]
    assert conversion.unplaced == [] and conversion.synthesis_prelu
    assert "motion.fuse_act.weight" in conversion.state_dict
    assert any("cannot be folded" in note for note in conversion.notes)


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(case, marks=() if case.name in QUICK else pytest.mark.slow, id=case.name)
        for case in fixture.CASES
    ],
)
def test_stno_paper_gives_the_reference_output_in_float64(
    case, stored, converted, one_torch_thread
):
    conversion = converted[case.negative_head]
    net = fixture.paper_network(conversion.state_dict, conversion.synthesis_prelu)
    ours = fixture.run_ours(net, case, fixture.reference_inputs(case))
    values, _ = fixture.summarise(case, ours)
    assert fixture.relative_max_error(values, stored[case.name]) <= 1e-6


@pytest.mark.slow
def test_several_timestamps_in_one_call_give_the_reference_output_of_each(
    stored, converted, one_torch_thread
):
    half = fixture.CASES_BY_NAME["T2_t0.5_x2"]
    quarter = fixture.CASES_BY_NAME["T2_t0.25_x2"]
    conversion = converted[False]
    net = fixture.paper_network(conversion.state_dict, conversion.synthesis_prelu)
    ours = fixture.run_ours(net, half, fixture.reference_inputs(half), times=[0.25, 0.5])
    assert ours.shape[0] == 4  # input 0, t = 0.25, t = 0.5, input 1
    # the inputs take the flows of the timestamp nearest 0.5: all of t = 0.5's output matches
    values, _ = fixture.summarise(half, ours[[0, 2, 3]])
    assert fixture.relative_max_error(values, stored[half.name]) <= 1e-6
    values, frames = fixture.summarise(quarter, ours[[0, 1, 3]])
    synthesised = frames == 1
    error = fixture.relative_max_error(values[synthesised], stored[quarter.name][synthesised])
    assert error <= 1e-6


def test_stno_convert_file_runs_in_stno_eval_format_in_float32(
    tmp_path, stored, capsys, one_torch_thread
):
    # a DataParallel state dict wrapped under `params`, as training frameworks save them
    weights = fixture.reference_weights()
    wrapped = {"params": {f"module.{k}": v.float() for k, v in weights.items()}}
    torch.save(wrapped, tmp_path / "STVSR_NO.pth")
    assert main([str(tmp_path / "STVSR_NO.pth"), str(tmp_path / "paper.ckpt")]) == 0
    out = capsys.readouterr().out
    assert "read 465 tensors from 'params'" in out and "none left unplaced" in out
    net, info = load_network(tmp_path / "paper.ckpt", expected="stno_paper")
    assert info["preset"] == "stno_paper" and info["net_config"]["flows_at_t"]
    case = fixture.CASES_BY_NAME["T2_t0.25_x2.5"]
    ours = fixture.run_ours(net, case, fixture.reference_inputs(case).float())
    values, _ = fixture.summarise(case, ours)
    assert fixture.relative_max_error(values, stored[case.name]) <= 1e-4


@pytest.mark.parametrize("wrapper", ["raw", "state_dict", "params", "module"])
def test_the_reader_unwraps_the_usual_containers(tmp_path, wrapper):
    weights = {"conv00.weight": torch.zeros(2, 2), "conv00.bias": torch.zeros(2)}
    content = {
        "raw": weights,
        "state_dict": {"state_dict": weights, "epoch": 3},
        "params": {"params": weights},
        "module": {f"module.{k}": v for k, v in weights.items()},
    }[wrapper]
    torch.save(content, tmp_path / "w.pth")
    state_dict, _ = read_reference_state_dict(tmp_path / "w.pth")
    assert set(state_dict) == set(weights)


def test_the_reader_refuses_code_and_foreign_files(tmp_path):
    torch.save({"state_dict": argparse.Namespace(epoch=3)}, tmp_path / "code.pth")
    with pytest.raises(ConversionError, match="argparse.Namespace"):
        read_reference_state_dict(tmp_path / "code.pth")
    (tmp_path / "text.pth").write_text("not weights")
    with pytest.raises(ConversionError, match="not a PyTorch weights file"):
        read_reference_state_dict(tmp_path / "text.pth")
    torch.save({"epoch": 3}, tmp_path / "empty.pth")
    with pytest.raises(ConversionError, match="no state dict"):
        read_reference_state_dict(tmp_path / "empty.pth")
    with pytest.raises(ConversionError, match="no such file"):
        read_reference_state_dict(tmp_path / "missing.pth")


def test_tensors_that_cannot_be_placed_are_listed(tmp_path, capsys):
    weights = {k: v.float() for k, v in fixture.reference_weights().items()}
    weights["flownet.decoder1.convblock.0.0.weight"] = torch.zeros(1)
    del weights["fc2.bias"]
    torch.save(weights, tmp_path / "odd.pth")
    assert main([str(tmp_path / "odd.pth"), str(tmp_path / "odd.ckpt")]) == 2
    error = capsys.readouterr().err
    assert "flownet.decoder1.convblock.0.0.weight" in error and "decoder.project.2.bias" in error
    assert not (tmp_path / "odd.ckpt").exists()


def test_stno_paper_is_stno_base_with_the_switches():
    base, paper = _net_config("stno_base"), _net_config("stno_paper")
    assert {k: v for k, v in paper.items() if k not in SWITCHES} == base
    assert {k: paper[k] for k in SWITCHES} == SWITCHES | {"synthesis_prelu": False}
    assert paper_net_config() == paper


def _tiny(**switches) -> STNO:
    torch.manual_seed(0)
    config = {k: v for k, v in _net_config("stno_tiny").items() if k != "_target_"}
    return STNO(**config, **switches).eval()


def test_switches_off_leave_the_network_unchanged_and_each_one_acts(one_torch_thread):
    frames = torch.rand(1, 3, 3, 13, 21, generator=torch.Generator().manual_seed(0))
    call = (frames, [0.25, 0.6], (30, 47))
    with torch.no_grad():
        explicit = _tiny(**{k: not v for k, v in SWITCHES.items()})
        assert torch.equal(explicit(*call), _tiny()(*call))
        for switch, value in SWITCHES.items():
            base, switched = _tiny(), _tiny(**{switch: value})
            state = base.state_dict()
            if switch == "synthesis_prelu":
                state["motion.fuse_act.weight"] = torch.full((3,), -0.5)
            if switch == "clamp_output":  # acts only on values outside [0, 1]
                state["decoder.project.2.bias"] += 2
                base.load_state_dict(state)
            assert set(switched.state_dict()) == set(state), switch
            switched.load_state_dict(state)
            assert not torch.allclose(switched(*call), base(*call)), switch


def test_checkpoints_without_the_switches_still_load(tmp_path):
    net = _tiny()
    path = save_network_checkpoint(net, tmp_path / "old.ckpt", preset="stno_tiny")
    checkpoint = torch.load(path, weights_only=True)
    for key in SWITCHES:
        del checkpoint["hyper_parameters"]["net"][key]
    torch.save(checkpoint, path)
    loaded, info = load_network(path, expected="stno_tiny")
    assert not any(key in info["net_config"] for key in SWITCHES)
    assert loaded.config == net.config


def test_stno_paper_keeps_bounded_memory_decoding_at_any_size(one_torch_thread):
    net = _tiny(**SWITCHES | {"synthesis_prelu": False})
    frames = torch.rand(1, 3, 3, 13, 21, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        whole = net(frames, [0.3, 0.5, 0.9], (40, 61))
        chunked = net(frames, [0.3, 0.5, 0.9], (40, 61), max_queries=500)
    assert whole.shape == (1, 9, 3, 40, 61)
    torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-5)


def _compose(config_name: str, overrides: list[str]):
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(config_name=config_name, overrides=overrides)


@pytest.mark.slow
def test_converted_weights_run_in_stno_eval_stno_infer_and_init_ckpt(tmp_path, one_torch_thread):
    from PIL import Image

    from stno.cli.eval import evaluate_from_config
    from stno.cli.infer import infer_from_config
    from stno.io.checkpoint import load_initial_weights

    weights = {k: v.float() for k, v in fixture.reference_weights().items()}
    torch.save({"state_dict": weights}, tmp_path / "STVSR_NO.pth")
    ckpt = tmp_path / "paper.ckpt"
    assert main([str(tmp_path / "STVSR_NO.pth"), str(ckpt)]) == 0
    clip = tmp_path / "clip"
    clip.mkdir()
    rng = np.random.default_rng(0)
    for index in range(3):  # 44x52 frames: a 22x26 input at x2, not a multiple of 8
        frame = (rng.random((44, 52, 3)) * 255).astype(np.uint8)
        Image.fromarray(frame).save(clip / f"{index:04d}.png")
    common = [f"ckpt_path={ckpt}", "preset=stno_paper", "progress=false", "device=cpu"]
    document = evaluate_from_config(
        _compose(
            "eval",
            [
                *common,
                "benchmark=video",
                f"benchmark.root={clip}",
                f"output_dir={tmp_path / 'eval'}",
                "space_scale=2",
                "time_scale=2",
                "max_queries=700",
            ],
        )
    )
    assert document["model"] == "stno_paper" and len(document["frames"]) == 3
    assert all(np.isfinite(frame["psnr_y"]) for frame in document["frames"])
    infer_from_config(
        _compose(
            "infer",
            [*common, f"input={clip}", f"output={tmp_path / 'up'}", "space_scale=2.5"],
        )
    )
    outputs = sorted((tmp_path / "up").iterdir())
    assert len(outputs) == 5 and Image.open(outputs[0]).size == (130, 110)
    net = STNO(**{k: v for k, v in paper_net_config().items() if k != "_target_"})
    assert "loaded" in load_initial_weights(net, ckpt).lower()
