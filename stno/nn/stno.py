"""The STNO network: motion stage -> propagation stage -> continuous decoder."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from stno.errors import ConfigError
from stno.ops.warping import full_precision

from .decoder import ContinuousDecoder
from .motion import MotionEstimator
from .propagation import BidirectionalPropagation

__all__ = ["STNO", "check_video_call", "output_range", "PRECISIONS"]

# Arithmetic of a forward pass: float32, or bfloat16 autocast (see STNO.forward).
PRECISIONS = ("fp32", "bf16")


def check_video_call(
    frames: torch.Tensor, times: Sequence[float], out_size
) -> tuple[list[float], tuple[int, int]]:
    """Validate the arguments shared by every video model; returns (times, (H, W)).

    Raises ValueError with a message that says what to change.
    """
    if frames.dim() != 5 or frames.shape[2] != 3:
        raise ConfigError(f"frames must have shape (B, T, 3, h, w), got {tuple(frames.shape)}")
    if frames.shape[1] < 2:
        raise ConfigError(f"need at least 2 input frames (T >= 2), got T={frames.shape[1]}")
    times = [float(t) for t in times]
    for t in times:
        if not 0.0 < t < 1.0 or math.isnan(t):
            raise ConfigError(f"timestamps must lie strictly between 0 and 1, got {t}")
    if any(b <= a for a, b in zip(times, times[1:], strict=False)):
        raise ConfigError(f"timestamps must be strictly increasing without repeats, got {times}")
    try:
        H, W = (int(s) for s in out_size)
    except (TypeError, ValueError):
        raise ConfigError(f"out_size must be two integers (H, W), got {out_size!r}") from None
    h, w = frames.shape[-2:]
    if H < h or W < w:
        raise ConfigError(
            f"output size {H}x{W} is smaller than the input {h}x{w}; use a scale >= 1"
        )
    return times, (H, W)


class STNO(nn.Module):
    """Space-time video super-resolution with a neural operator.

    ``net(frames, times, out_size)``:
        frames: (B, T, 3, h, w) in [0, 1], T >= 2, any h, w (padded internally to a multiple of 8).
        times: strictly increasing floats in (0, 1): the timestamps synthesised between every pair
            of neighbouring inputs (may be empty: space-only super-resolution).
        out_size: (H, W) with H >= h, W >= w; any scale, integer or not, also beyond training.
        max_queries: target pixels decoded at once (memory bound); None = ``self.max_queries``.
    Returns (B, T + (T-1)*len(times), 3, H, W) in [0, 1], in time order: input 0, the frames at
    its timestamps, input 1, ... All timestamps are computed in one pass.

    Args (the presets are in ``conf/model/``):
        channels, num_blocks: propagation width and residual blocks per direction.
        pyramid_channels, attn_dim, heads, mlp_ratio, decoder_widths, residual_channels: motion stage.
        decoder_hidden, decoder_attn_blocks, decoder_heads, max_train_scale: continuous decoder.
        image_residual: add the bilinearly upsampled LR frame to the output (the network then
            learns a correction; not in the reference, off in ``stno_base``).
        max_queries: default decoding chunk (None = decode every target pixel at once).

    Switches that restore the behaviour of the paper's reference code (``hahazh/STVSR-NO``), so
    its released weights, converted by ``stno-convert``, give its outputs (preset ``stno_paper``).
    All are off by default; each costs nothing when off:
        head_norm_unbiased: the per-head layer norms of the motion attention divide by the
            unbiased standard deviation plus eps, not by sqrt(variance + eps).
        linspace_coords: the motion attention's coordinate branch embeds a ``linspace(-1, 1)``
            grid over the map, not pixel centres.
        reference_attention_wiring: in the motion attention blocks the attention result reaches
            the output only through the MLP: ``x + MLP(LN2(2 LN1(x) + O(A + LN1(x))))``.
        pair_centring: brightness is centred by the mean of each frame pair, not of the clip.
        synthesis_prelu: the synthesised frame is ``clamp(PReLU(conv([merge, res])))``, not
            ``clamp(merge + conv([merge, res]))`` (only needed for PReLU slopes < 0, which the
            converter cannot fold into the latter).
        flows_at_t: the 0<->1 flows that carry the recurrent state are estimated at each
            requested t, not at t = 0.5; the recurrence then runs once per timestamp (inputs take
            the flows of the requested t nearest 0.5).
        reflect_padding: reflect-pad the input to a multiple of 8 and decode the padded feature
            map at ``round(scale * padded size)``, then crop (the reference's test scripts),
            instead of replicate-padding and decoding the unpadded map.
        clamp_output: clamp the output to [0, 1]; the reference returns the raw decoder output
            (its scripts clip when writing 8-bit images, as our metrics and writers do).
    Not reproduced: at odd integer scales the reference's decoder gives the target row and column
    whose centres fall on the last LR row's and column's centres (the second to last at x3)
    weights of 1/4 per neighbour, as its area weights degenerate there; a defect.
    """

    def __init__(
        self,
        channels: int = 64,
        num_blocks: int = 30,
        pyramid_channels: Sequence[int] = (36, 54, 72),
        attn_dim: int = 128,
        heads: int = 8,
        mlp_ratio: float = 4.0,
        decoder_widths: Sequence[int] = (108, 162, 144),
        residual_channels: int = 29,
        decoder_hidden: int = 256,
        decoder_attn_blocks: int = 0,
        decoder_heads: int = 16,
        max_train_scale: float = 4.0,
        image_residual: bool = False,
        max_queries: int | None = None,
        head_norm_unbiased: bool = False,
        linspace_coords: bool = False,
        reference_attention_wiring: bool = False,
        pair_centring: bool = False,
        synthesis_prelu: bool = False,
        flows_at_t: bool = False,
        reflect_padding: bool = False,
        clamp_output: bool = True,
    ):
        arguments = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        super().__init__()
        # the call's arguments, as plain values: what a checkpoint stores to rebuild the network
        self.config = {k: list(v) if isinstance(v, tuple) else v for k, v in arguments.items()}
        self.image_residual = image_residual
        self.max_queries = max_queries
        self.reflect_padding = reflect_padding
        self.clamp_output = clamp_output
        self.motion = MotionEstimator(
            pyramid_channels=pyramid_channels,
            decoder_widths=decoder_widths,
            residual_channels=residual_channels,
            attn_dim=attn_dim,
            heads=heads,
            mlp_ratio=mlp_ratio,
            pair_centring=pair_centring,
            flows_at_t=flows_at_t,
            synthesis_prelu=synthesis_prelu,
            unbiased_std=head_norm_unbiased,
            linspace_coords=linspace_coords,
            reference_wiring=reference_attention_wiring,
        )
        self.propagation = BidirectionalPropagation(channels, num_blocks)
        self.decoder = ContinuousDecoder(
            channels, decoder_hidden, decoder_attn_blocks, decoder_heads, max_train_scale
        )

    def forward(
        self,
        frames: torch.Tensor,
        times: Sequence[float],
        out_size: tuple[int, int],
        max_queries: int | None = None,
        pixels: torch.Tensor | None = None,
        precision: str | None = None,
        outputs: slice | range | None = None,
    ) -> torch.Tensor:
        """See the class docstring. ``pixels`` (B, O, Q) flat target indices ``y * W + x`` decode
        only those pixels of each output frame (sampled-query training): returns (B, O, 3, Q).
        ``precision``: ``"fp32"``, or ``"bf16"`` (matrix products and convolutions in bfloat16
        through autocast; flows, warping grids and the final image stay float32), or None: the
        caller's autocast state as it is (Lightning's ``trainer.precision=bf16-mixed`` trains in
        bf16 this way; without an autocast context that is float32).
        ``outputs``: a slice of the time-ordered output frames to compute (None: all). The inputs
        still all give temporal context; the other output frames are neither propagated nor
        decoded, and the result holds those of ``outputs`` only (the same values).

        Outputs are clamped to [0, 1] in eval mode only (and unless ``clamp_output=False``): in
        training, pixels predicted outside the range keep their gradient.
        """
        times, size = check_video_call(frames, times, out_size)
        selected = output_range(frames.shape[1], len(times), outputs)
        with self._arithmetic(frames, precision):
            latent = self._encode(frames, times, selected)
            out = self._decode(latent, size, max_queries, pixels)
        return self._finish(out)

    def stream(
        self,
        frames: torch.Tensor,
        times: Sequence[float],
        out_size: tuple[int, int],
        max_queries: int | None = None,
        precision: str | None = None,
        outputs: slice | range | None = None,
    ) -> Iterator[torch.Tensor]:
        """The output frames of :meth:`forward`, one (B, 3, H, W) at a time.

        The features are computed once; each output frame is decoded when it is asked for, so
        only one full-size frame is held at a time whatever the number of timestamps (what
        ``stno-infer`` uses).
        """
        times, size = check_video_call(frames, times, out_size)
        selected = output_range(frames.shape[1], len(times), outputs)
        with self._arithmetic(frames, precision):
            latent = self._encode(frames, times, selected)
        for k in range(len(selected)):
            # autocast is entered per step: a generator must not leave it on between yields
            with self._arithmetic(frames, precision):
                out = self._decode(latent.select(k), size, max_queries, None)
            yield self._finish(out)[:, 0]

    @staticmethod
    def _arithmetic(frames: torch.Tensor, precision: str | None):
        """The autocast context of ``precision`` (None: the caller's, unchanged)."""
        if precision is None:
            return contextlib.nullcontext()
        if precision not in PRECISIONS:
            raise ConfigError(
                f"precision must be one of {', '.join(PRECISIONS)} or None, got {precision!r}"
            )
        return torch.autocast(frames.device.type, torch.bfloat16, enabled=precision == "bf16")

    def _finish(self, out: torch.Tensor) -> torch.Tensor:
        if self.clamp_output and not self.training:
            out = out.clamp_(0, 1)  # in place: no extra full-size copy of every output frame
        return out

    def _encode(self, frames: torch.Tensor, times: list[float], selected: range) -> _Latent:
        """Motion and propagation: the LR features of the ``selected`` output frames."""
        b, t, _, h, w = frames.shape
        # the pyramid halves three times: pad to a multiple of 8, crop the features back
        ph, pw = (-h) % 8, (-w) % 8
        padded = frames
        if ph or pw:
            # reflect needs the pad to be smaller than the image
            mode = "reflect" if self.reflect_padding and ph < h and pw < w else "replicate"
            padded = F.pad(rearrange(frames, "b t c y x -> (b t) c y x"), (0, pw, 0, ph), mode=mode)
            padded = rearrange(padded, "(b t) c y x -> b t c y x", b=b)

        motion = self.motion(padded, times)
        feats = self.propagation(
            padded,
            motion.frames,
            motion.flow_01,
            motion.flow_10,
            motion.flow_t0,
            motion.flow_t1,
            motion.flow_01_per_t,
            motion.flow_10_per_t,
            outputs=selected,
        )
        # the LR frames of every output time, added bilinearly upsampled (image_residual)
        lr = None
        if self.image_residual:
            lr = full_precision(self._interleave(frames, motion.frames[..., :h, :w], selected))
        # reflect_padding decodes the padded map (then crops the image); otherwise crop it now
        decode_padded = bool(self.reflect_padding and (ph or pw))
        if not decode_padded:
            feats = feats[..., :h, :w]
        return _Latent(feats, lr, (h, w), decode_padded)

    def _decode(self, latent: _Latent, out_size, max_queries, pixels) -> torch.Tensor:
        """The continuous decoder over the latent's frames: (B, O, 3, H, W) (or (B, O, 3, Q))."""
        H, W = out_size
        h, w = latent.size
        b = latent.feats.shape[0]
        feats = rearrange(latent.feats, "b o c y x -> (b o) c y x")
        lr = None if latent.lr is None else rearrange(latent.lr, "b o c y x -> (b o) c y x")
        flat_pixels = None if pixels is None else rearrange(pixels, "b o q -> (b o) q")
        max_queries = max_queries or self.max_queries
        if latent.padded:
            if flat_pixels is not None:
                raise ConfigError("sampled-query decoding is not available with reflect_padding")
            # decode the padded map at the padded target size, then crop: the reference's scripts
            ph, pw = feats.shape[-2] - h, feats.shape[-1] - w
            size = (round(H / h * (h + ph)), round(W / w * (w + pw)))
            out = full_precision(self.decoder(feats, size, max_queries)[..., :H, :W])
            if lr is not None:
                out.add_(F.interpolate(lr, size=(H, W), mode="bilinear", align_corners=False))
        else:
            # the decoder adds the residual's upsampling to its shortcut's (one pass, not two)
            out = self.decoder(feats, (H, W), max_queries, flat_pixels, skip=lr)
            out = full_precision(out)
        return rearrange(out, "(b o) c ... -> b o c ...", b=b)

    @staticmethod
    def _interleave(frames: torch.Tensor, synth: torch.Tensor, selected: range) -> torch.Tensor:
        """Inputs (B, T, 3, h, w) and synthesised (n, B*(T-1), 3, h, w) -> the ``selected``
        frames of the time-ordered sequence, (B, len(selected), 3, h, w)."""
        b = frames.shape[0]
        n = synth.shape[0]
        synth = rearrange(synth, "n (b p) c y x -> b p n c y x", b=b)
        seq = []
        for o in selected:
            i, j = divmod(o, n + 1)
            seq.append(frames[:, i] if j == 0 else synth[:, i, j - 1])
        return torch.stack(seq, dim=1)


@dataclass
class _Latent:
    """What the decoder needs of a clip: the LR features of the output frames (B, O, c, h', w')
    (h', w' = the input size, or the padded size with ``reflect_padding``), their LR images for
    the image residual (B, O, 3, h, w) or None, and the input size (h, w)."""

    feats: torch.Tensor
    lr: torch.Tensor | None
    size: tuple[int, int]
    padded: bool

    def select(self, k: int) -> _Latent:
        """The latent of output frame ``k`` alone."""
        lr = None if self.lr is None else self.lr[:, k : k + 1]
        return _Latent(self.feats[:, k : k + 1], lr, self.size, self.padded)


def output_range(num_inputs: int, num_times: int, outputs: slice | range | None) -> range:
    """The indices of the time-ordered output frames that ``outputs`` selects (None: all).

    Raises ConfigError for an empty selection or a step other than 1."""
    total = num_inputs + (num_inputs - 1) * num_times
    if outputs is None:
        return range(total)
    if isinstance(outputs, range):
        outputs = slice(outputs.start, outputs.stop, outputs.step)
    if not isinstance(outputs, slice):
        raise ConfigError(f"outputs must be a slice or range of output frames, got {outputs!r}")
    selected = range(total)[outputs]
    if selected.step != 1 or len(selected) == 0:
        raise ConfigError(
            f"outputs {outputs} selects no consecutive output frames of the {total} there are"
        )
    return selected
