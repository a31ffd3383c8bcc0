"""The decoder's compiled inference pass (stno/nn/native.py) computes the torch path's map."""

import shutil

import pytest
import torch

from stno.nn import ContinuousDecoder, native
from stno.nn.native import decode_kernel, native_status

HAVE_COMPILER = bool(shutil.which("cc") or shutil.which("gcc"))


def _both(decoder, feat, size, skip=None, autocast=False):
    """(native pass, torch band path) outputs of ``decoder`` in inference."""
    outs = []
    for use_native in (True, False):
        decoder.native = use_native
        with torch.no_grad(), torch.autocast("cpu", torch.bfloat16, enabled=autocast):
            outs.append(decoder(feat, size, skip=skip))
    decoder.native = True
    return outs


def test_the_kernel_builds_where_there_is_a_compiler():
    if not HAVE_COMPILER:
        pytest.skip("no C compiler on this machine: the torch path runs")
    assert decode_kernel() is not None, native_status()
    assert native_status().startswith("compiled C")


@pytest.mark.skipif(not HAVE_COMPILER, reason="no C compiler")
@pytest.mark.parametrize(
    "lr,size",
    [((9, 13), (36, 52)), ((9, 13), (31, 40)), ((9, 13), (11, 13)), ((7, 5), (40, 7)),
     ((12, 20), (27, 61)), ((1, 3), (5, 9))],
)  # fmt: skip
@pytest.mark.parametrize("hidden", [16, 64, 256])
def test_native_pass_equals_torch_path_fp32(lr, size, hidden):
    torch.manual_seed(hidden)
    decoder = ContinuousDecoder(in_channels=6, hidden=hidden).eval()
    feat = torch.randn(3, 6, *lr)
    skip = torch.rand(3, 3, *lr)
    got, want = _both(decoder, feat, size, skip)
    assert got.shape == want.shape == (3, 3, *size)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=2e-6)


@pytest.mark.skipif(not HAVE_COMPILER, reason="no C compiler")
def test_native_pass_under_bf16_autocast_equals_torch_path():
    # both blend the same bfloat16 projections in float32
    torch.manual_seed(4)
    decoder = ContinuousDecoder(in_channels=8, hidden=64).eval()
    feat = torch.randn(2, 8, 12, 20)
    got, want = _both(decoder, feat, (45, 77), autocast=True)
    assert got.dtype == want.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=1e-5, atol=2e-6)


@pytest.mark.skipif(not HAVE_COMPILER, reason="no C compiler")
def test_gelu_holds_far_out_in_both_tails():
    # large features drive the hidden values past the kernel's +-5.54 switch to v and 0
    torch.manual_seed(5)
    decoder = ContinuousDecoder(in_channels=4, hidden=32).eval()
    feat = torch.randn(1, 4, 6, 7) * 40
    got, want = _both(decoder, feat, (23, 29))
    assert want.abs().max() > 10
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-4)


@pytest.mark.skipif(not HAVE_COMPILER, reason="no C compiler")
def test_rows_split_over_threads_give_the_same_frame():
    torch.manual_seed(6)
    decoder = ContinuousDecoder(in_channels=5, hidden=32).eval()
    feat = torch.randn(1, 5, 10, 11)
    threads = torch.get_num_threads()
    outs = []
    try:
        for count in (1, 3):
            torch.set_num_threads(count)
            with torch.no_grad():
                outs.append(decoder(feat, (41, 37)))
    finally:
        torch.set_num_threads(threads)
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)


def test_switched_off_it_says_so_and_the_torch_path_runs(monkeypatch):
    monkeypatch.setenv("STNO_NATIVE", "0")
    monkeypatch.setattr(native, "_state", {})
    assert decode_kernel() is None
    assert native_status() == "torch (STNO_NATIVE=0)"
    decoder = ContinuousDecoder(in_channels=3, hidden=8).eval()
    with torch.no_grad():
        assert decoder(torch.randn(1, 3, 4, 5), (9, 11)).shape == (1, 3, 9, 11)


def test_a_failing_compiler_falls_back_with_the_reason(monkeypatch, tmp_path):
    monkeypatch.setenv("CC", "false")  # a "compiler" that always fails
    monkeypatch.setenv("STNO_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(native, "_state", {})
    assert decode_kernel() is None
    assert native_status().startswith("torch (compiling native_decode.c failed")
