"""bfloat16 inference: close to float32, full-precision geometry, the `auto` choice."""

import pytest
import torch

from stno.inference.runtime import resolve_precision
from stno.nn import STNO
from stno.ops.warping import backward_warp


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return STNO(
        channels=16,
        num_blocks=2,
        pyramid_channels=(8, 12, 16),
        attn_dim=16,
        heads=2,
        decoder_widths=(16, 24, 24),
        residual_channels=5,
        decoder_hidden=32,
        image_residual=True,
    ).eval()


def test_bf16_output_is_close_to_fp32(net):
    torch.manual_seed(1)
    frames = torch.rand(1, 3, 3, 24, 40)
    with torch.no_grad():
        full = net(frames, [0.25, 0.5], (61, 100))
        half = net(frames, [0.25, 0.5], (61, 100), precision="bf16")
    assert half.dtype == torch.float32  # the image itself is float32
    # bf16 keeps 8 bits of mantissa: random weights give differences of a few 8-bit levels
    # at most, and much less on average
    assert (half - full).abs().max() < 0.05
    assert (half - full).abs().mean() < 0.005


def test_warping_stays_float32_under_bf16_autocast():
    x = torch.rand(1, 3, 20, 300)
    flow = torch.full((1, 2, 20, 300), 0.37)
    want = backward_warp(x, flow)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = backward_warp(x, flow)
    torch.testing.assert_close(got, want)  # bf16 grids would move pixels by up to ~0.6 px here


def test_unknown_precision_is_a_clear_error(net):
    with pytest.raises(ValueError, match="precision must be one of"):
        net(torch.rand(1, 2, 3, 8, 8), [0.5], (16, 16), precision="fp8")


@pytest.mark.parametrize(
    "device,flags,want",
    [
        ("cpu", {"avx512_bf16"}, "bf16"),
        ("cpu", {"amx_bf16", "avx512_bf16"}, "bf16"),
        ("cpu", {"avx2", "fma"}, "fp32"),
        ("cpu", set(), "fp32"),
    ],
)
def test_auto_picks_bf16_only_where_the_cpu_has_bf16_units(device, flags, want):
    choice, reason = resolve_precision("auto", torch.device(device), cpu_flags=flags)
    assert choice == want, reason
    assert reason  # says why


def test_explicit_precision_is_kept():
    assert resolve_precision("fp32", torch.device("cpu"), cpu_flags={"avx512_bf16"})[0] == "fp32"
    assert resolve_precision("bf16", torch.device("cpu"), cpu_flags=set())[0] == "bf16"
    with pytest.raises(ValueError, match="precision"):
        resolve_precision("half", torch.device("cpu"))


def _conv_dtypes(net, run) -> set[torch.dtype]:
    """dtypes of every convolution output while ``run()`` runs."""
    seen = set()
    hooks = [
        module.register_forward_hook(lambda _m, _i, out: seen.add(out.dtype))
        for module in net.modules()
        if isinstance(module, torch.nn.Conv2d)
    ]
    try:
        run()
    finally:
        for hook in hooks:
            hook.remove()
    return seen


def test_the_callers_autocast_is_kept_unless_a_precision_is_asked(net):
    """Lightning's `trainer.precision=bf16-mixed` is an autocast around the training step: the
    network must run inside it in bf16, not switch it off (it did, silently training in fp32)."""
    frames = torch.rand(1, 3, 3, 24, 40)

    def call(precision):
        with torch.no_grad(), torch.autocast("cpu", torch.bfloat16):
            return net(frames, [0.5], (48, 80), precision=precision)

    assert _conv_dtypes(net, lambda: call(None)) == {torch.bfloat16}
    assert _conv_dtypes(net, lambda: call("fp32")) == {torch.float32}
    assert _conv_dtypes(net, lambda: net(frames, [0.5], (48, 80))) == {torch.float32}


def test_bf16_mixed_training_runs_the_network_in_bf16(train_config):
    """A real Lightning training step with trainer.precision=bf16-mixed on CPU."""
    import hydra

    from stno.lit.run import instantiate_model

    cfg = train_config(["trainer.precision=bf16-mixed", "trainer.max_steps=1"])
    model = instantiate_model(cfg.model, hydra.utils.instantiate)
    datamodule = hydra.utils.instantiate(cfg.data)
    trainer = hydra.utils.instantiate(
        cfg.trainer, callbacks=[], logger=False, enable_checkpointing=False, limit_val_batches=0
    )
    seen = _conv_dtypes(model.net, lambda: trainer.fit(model, datamodule=datamodule))
    assert torch.bfloat16 in seen
