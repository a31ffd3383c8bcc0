"""Propagation stage: bidirectional recurrent propagation over input and synthesised frames.

BasicVSR-style: a backward pass then a forward pass over the input frames; each step warps the
previous hidden state with the 0<->1 flows of the motion stage and runs a residual trunk. Each
synthesised frame at time t between inputs i and i+1 takes the backward state of input i+1
(warped with the flow t->1) and the forward state of input i (warped with t->0). The recurrence
over the input frames does not depend on t, so it runs once; all synthesised frames of all
timestamps go through each trunk in one batched call.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from stno.ops.warping import backward_warp

__all__ = ["ResidualBlock", "ResidualTrunk", "BidirectionalPropagation"]


class ResidualBlock(nn.Module):
    """conv 3x3 - PReLU - conv 3x3, plus the input (no normalisation)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, 1, 1)
        self.act = nn.PReLU()
        self.conv2 = nn.Conv2d(channels, channels, 3, 1, 1)
        # small initial residuals keep a deep trunk close to identity at the start of training
        for conv in (self.conv1, self.conv2):
            nn.init.kaiming_normal_(conv.weight, a=0, mode="fan_in")
            conv.weight.data.mul_(0.1)
            nn.init.zeros_(conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled():
            return x + self.conv2(self.act(self.conv1(x)))
        # inference: the same values with no extra full-size tensors (see _prelu_)
        return self.conv2(_prelu_(self.act, self.conv1(x))).add_(x)


def _prelu_(act: nn.PReLU, x: torch.Tensor) -> torch.Tensor:
    """``act(x)`` in place where it has one slope (then it is a leaky ReLU with that slope)."""
    if act.weight.numel() != 1:
        return act(x)
    return F.leaky_relu_(x, float(act.weight))


class ResidualTrunk(nn.Module):
    """Input conv + PReLU, then ``num_blocks`` residual blocks: (N, cin, h, w) -> (N, channels, h, w).

    Called with the list of its inputs, concatenated along channels.
    """

    def __init__(self, in_channels: int, channels: int, num_blocks: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, channels, 3, 1, 1),
            nn.PReLU(),
            *[ResidualBlock(channels) for _ in range(num_blocks)],
        )

    def forward(self, parts: list[torch.Tensor]) -> torch.Tensor:
        if torch.is_grad_enabled():
            return self.body(torch.cat(parts, 1))
        # Inference: the inputs are concatenated in autocast's dtype (one cast per part instead
        # of a float32 concatenation cast afterwards), and the convolutions run channels last
        # (oneDNN's native layout on CPU: no reordering inside each convolution), converted once
        # here; the result stays channels last (the decoder reads features that way). The PReLUs
        # and residual additions run in place. Measured on 2 cores at 320x180 (bf16, 4 blocks):
        # 41 -> 33 ms per call, the same values. Not in training, where the layout did not pay
        # (experiments/speed_benchmark.md).
        device = parts[0].device.type
        if torch.is_autocast_enabled(device):
            dtype = torch.get_autocast_dtype(device)
            parts = [part.to(dtype) for part in parts]
        x = torch.cat(parts, 1).contiguous(memory_format=torch.channels_last)
        x = _prelu_(self.body[1], self.body[0](x))
        for block in self.body[2:]:
            x = block(x)
        return x


class BidirectionalPropagation(nn.Module):
    """Recurrent feature propagation.

    Args:
        channels: hidden state channels (64 in the paper).
        num_blocks: residual blocks per direction (30 in the paper).
    """

    # synthesised frames per trunk call without autograd (inference)
    inference_batch = 2

    def __init__(self, channels: int = 64, num_blocks: int = 30):
        super().__init__()
        self.channels = channels
        self.backward_trunk = ResidualTrunk(3 + channels, channels, num_blocks)
        self.forward_trunk = ResidualTrunk(3 + 2 * channels, channels, num_blocks)

    def forward(
        self,
        frames,
        synth,
        flow_01,
        flow_10,
        flow_t0,
        flow_t1,
        flow_01_per_t=None,
        flow_10_per_t=None,
        outputs: range | None = None,
    ) -> torch.Tensor:
        """Features for every output frame (or those in ``outputs``), in time order.

        Args:
            frames: (B, T, 3, h, w) input LR frames in [0, 1].
            synth: (n, B*(T-1), 3, h, w) synthesised LR frames for n timestamps.
            flow_01, flow_10: (B*(T-1), 2, h, w) pixel flows 0->1 and 1->0 of each pair.
            flow_t0, flow_t1: (n, B*(T-1), 2, h, w) pixel flows t->0 and t->1.
            flow_01_per_t, flow_10_per_t: None, or (n, B*(T-1), 2, h, w) 0<->1 flows of each
                timestamp: the recurrence over the inputs then runs again for every timestamp
                whose flows differ from ``flow_01, flow_10`` (which give the inputs' features).
            outputs: indices into the time-ordered outputs (input 0, its n timestamps, input 1,
                ...) to return; None: all. The recurrence over the inputs always runs whole (it
                is the temporal context); synthesised frames outside ``outputs`` are skipped.
        Returns:
            (B, len(outputs), channels, h, w); all: (B, T + (T-1)*n, channels, h, w).
        """
        b, t = frames.shape[:2]
        n = synth.shape[0]
        outputs = range(t + (t - 1) * n) if outputs is None else outputs
        # output o reads forward state o // (n + 1): its input's own, or a synthesised frame's
        # earlier neighbour's; the forward pass stops at the last of those asked for
        until = max(o // (n + 1) for o in outputs)
        backward_states, forward_states = self._recurrence(frames, flow_01, flow_10, until)
        # the pairs whose synthesised frames are asked for: [first, end)
        pairs = [o // (n + 1) for o in outputs if o % (n + 1)]
        fwd, first = None, 0
        if pairs:
            first, end = min(pairs), max(pairs) + 1
            flows = (flow_t0, flow_t1, flow_01, flow_10, flow_01_per_t, flow_10_per_t)
            states = (backward_states, forward_states)
            fwd = self._synthesised_pairs(frames, synth, flows, states, slice(first, end), until)
        out = []
        for o in outputs:
            i, j = divmod(o, n + 1)
            out.append(forward_states[i] if j == 0 else fwd[:, i - first, j - 1])
        return torch.stack(out, dim=1)

    def _synthesised_pairs(
        self, frames, synth, flows, states, pairs: slice, forward_until: int
    ) -> torch.Tensor:
        """Features of the synthesised frames of ``pairs``: (B, pairs, n, channels, h, w).

        ``flows``: (flow_t0, flow_t1, flow_01, flow_10, flow_01_per_t, flow_10_per_t) as
        :meth:`forward` takes them; ``states``: (backward, forward) of the recurrence."""
        flow_t0, flow_t1, flow_01, flow_10, flow_01_per_t, flow_10_per_t = flows
        b = frames.shape[0]
        n = synth.shape[0]

        def pick(x):  # (n, B*(T-1), ...) -> (n, B*pairs, ...)
            x = rearrange(x, "n (b p) ... -> n b p ...", b=b)[:, :, pairs]
            return rearrange(x, "n b p ... -> n (b p) ...")

        synth, flow_t0, flow_t1 = pick(synth), pick(flow_t0), pick(flow_t1)
        if flow_01_per_t is None:
            return self._synthesised(frames, synth, flow_t0, flow_t1, *states, pairs)
        per_t = []
        for j in range(n):
            step_states = states
            if not (
                torch.equal(flow_01_per_t[j], flow_01) and torch.equal(flow_10_per_t[j], flow_10)
            ):
                step_states = self._recurrence(
                    frames, flow_01_per_t[j], flow_10_per_t[j], forward_until
                )
            step = slice(j, j + 1)
            per_t.append(
                self._synthesised(
                    frames, synth[step], flow_t0[step], flow_t1[step], *step_states, pairs
                )
            )
        return torch.cat(per_t, dim=2)

    def _recurrence(self, frames, flow_01, flow_10, forward_until: int | None = None):
        """Backward then forward pass over the inputs: two lists of T states (B, channels, h, w).

        ``forward_until``: the last input whose forward state is needed; the forward pass stops
        there (the states after it stay None). The backward pass always runs over every input:
        it is what carries the later inputs' context to the earlier ones."""
        b, t = frames.shape[:2]
        c = self.channels
        pairs = "(b p) ... -> b p ..."
        flow_01 = rearrange(flow_01, pairs, b=b)
        flow_10 = rearrange(flow_10, pairs, b=b)

        backward_states = [None] * t
        state = frames.new_zeros(b, c, *frames.shape[-2:])
        for i in range(t - 1, -1, -1):
            if i < t - 1:  # bring the state of frame i+1 to frame i
                state = backward_warp(state, flow_01[:, i])
            state = self.backward_trunk([frames[:, i], state])
            backward_states[i] = state
        forward_states = [None] * t
        state = torch.zeros_like(state)
        for i in range(t if forward_until is None else forward_until + 1):
            if i > 0:
                state = backward_warp(state, flow_10[:, i - 1])
            state = self.forward_trunk([frames[:, i], backward_states[i], state])
            forward_states[i] = state
        return backward_states, forward_states

    def _synthesised(
        self, frames, synth, flow_t0, flow_t1, backward_states, forward_states, pairs: slice
    ):
        """Features of the synthesised frames of ``pairs`` (``synth`` and the flows hold those
        pairs only): (B, pairs, n, channels, h, w)."""
        b = frames.shape[0]
        n = synth.shape[0]
        # synthesised frames: every pair and timestamp in one batch, (n, b, p) flattened
        synth_flat = rearrange(synth, "n m c y x -> (n m) c y x")

        def neighbours(offset):  # states of inputs i+offset of every pair: (b p) c y x
            states = backward_states if offset else forward_states
            stack = torch.stack(states[pairs.start + offset : pairs.stop + offset], dim=1)
            return rearrange(stack, "b p c y x -> (b p) c y x")

        flat = "n m c y x -> (n m) c y x"
        later, earlier = neighbours(1), neighbours(0)
        flow_t1, flow_t0 = rearrange(flow_t1, flat), rearrange(flow_t0, flat)
        # inference: a few frames per trunk call keep the activations in cache (measured on
        # 2 cores at 320x180: 9 frames in one call cost 1.6x per frame what 2 at a time do)
        total, pair_count = synth_flat.shape[0], later.shape[0]
        step = total if torch.is_grad_enabled() else self.inference_batch
        parts = []
        for start in range(0, total, step):
            part = slice(start, start + step)
            # frame (j, m) of the (n m) batch takes the states of pair m (no n-fold copy)
            pair = torch.arange(start, min(start + step, total), device=later.device) % pair_count
            back = backward_warp(later[pair], flow_t1[part])
            back = self.backward_trunk([synth_flat[part], back])
            fwd = backward_warp(earlier[pair], flow_t0[part])
            parts.append(self.forward_trunk([synth_flat[part], back, fwd]))
        fwd = parts[0] if len(parts) == 1 else torch.cat(parts)
        return rearrange(fwd, "(n b p) c y x -> b p n c y x", n=n, b=b)
