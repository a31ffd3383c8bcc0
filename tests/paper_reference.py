"""The reference-equivalence fixture of ``stno_paper``: weight recipe, inputs, cases, comparison.

The fixture (``tests/data/stno_paper/``, see its README) stores no weights: the reference's
key -> shape list, and the reference code's float64 outputs (at seeded sample positions, plus
per-frame statistics) for the weights this module's recipe regenerates from a seed. Used by
``tests/test_paper_weights.py`` and by ``tests/data/stno_paper/make_fixture.py``, which ran the
reference to make the fixture.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

FIXTURE_DIR = Path(__file__).parent / "data" / "stno_paper"
KEYS_FILE = FIXTURE_DIR / "reference_keys.json"
OUTPUTS_FILE = FIXTURE_DIR / "reference_outputs.npz"
WEIGHT_SEED = 20250202
INPUT_SEED = 7
INPUT_SHAPE = (3, 3, 32, 48)  # (T, 3, h, w): the cases use the first T frames, maybe cropped
RANDOM_SAMPLES = 256

_LAYER_NORMS = r"(norm|norm1|norm2|kln|vln|corln)"


@dataclass(frozen=True)
class Case:
    """One call of the reference.

    frames: inputs used; times: the one timestamp; lr_size: (h, w) crop of the inputs;
    out_size: (H, W); padded: through the reference's test-script path (reflect-pad to a
    multiple of 8, decode at round(scale * padded size), crop) instead of its forward;
    negative_head: synthesis-head PReLU slopes made negative; border: target rows and columns
    left out at the bottom and right (odd integer scales: the row and column whose centres fall
    on the last LR centres, where the reference's area weights degenerate, and those after).
    """

    name: str
    frames: int = 2
    t: float = 0.5
    lr_size: tuple[int, int] = (32, 48)
    out_size: tuple[int, int] = (64, 96)
    padded: bool = False
    negative_head: bool = False
    border: int = 0


CASES = (
    Case("T2_t0.5_x2"),
    Case("T2_t0.25_x2", t=0.25),
    Case("T2_t0.5_x2.5", out_size=(80, 120)),
    Case("T2_t0.25_x2.5", t=0.25, out_size=(80, 120)),
    Case("T3_t0.5_x2", frames=3),
    Case("T3_t0.75_x2.5", frames=3, t=0.75, out_size=(80, 120)),
    Case("T2_t0.5_x4.5", out_size=(144, 216)),
    Case("T2_t0.5_x3_odd", out_size=(96, 144), border=2),
    Case("T2_t0.5_28x44_pad_x2", lr_size=(28, 44), out_size=(56, 88), padded=True),
    Case("T2_t0.5_x2_negative_prelu", negative_head=True),
)
CASES_BY_NAME = {case.name: case for case in CASES}


def reference_shapes() -> dict[str, tuple[int, ...]]:
    """The reference's state dict layout: key -> shape, in its order."""
    return {key: tuple(shape) for key, shape in json.loads(KEYS_FILE.read_text())}


def reference_weights(
    seed: int = WEIGHT_SEED, negative_head: bool = False, shapes=None
) -> dict[str, torch.Tensor]:
    """Random float64 weights in the reference's layout, the same for a seed on any machine.

    numpy's legacy ``RandomState`` stream is frozen, so the values do not depend on the numpy or
    torch version. Scales keep activations O(1) through the network: uniform weights of variance
    1/fan_in (0.3x that in the 2 x 30 residual blocks), layer-norm gains near 1, PReLU slopes in
    [0.05, 0.45] (negated for the synthesis head with ``negative_head``), small biases.
    """
    shapes = reference_shapes() if shapes is None else shapes
    rng = np.random.RandomState(seed)
    weights = {}
    for key, shape in shapes.items():
        if re.search(rf"\.{_LAYER_NORMS}\.weight$", key):
            values = 1 + rng.uniform(-0.25, 0.25, shape)
        elif re.search(rf"\.{_LAYER_NORMS}\.bias$", key):
            values = rng.uniform(-0.1, 0.1, shape)
        elif key.endswith(".weight") and len(shape) == 1:  # PReLU slopes
            values = rng.uniform(0.05, 0.45, shape)
            if negative_head and key == "flownet.reduce.1.weight":
                values = -values
        elif key.endswith(".bias"):
            values = rng.uniform(-0.05, 0.05, shape)
        else:
            if key.endswith("convblock.2.weight"):  # transposed conv (in, out, 4, 4), stride 2
                fan_in = shape[0] * shape[2] * shape[3] / 4
            else:
                fan_in = int(np.prod(shape[1:]))
            gain = 0.3 if ".main.2." in key else 1.0
            values = rng.uniform(-1, 1, shape) * gain * np.sqrt(3 / fan_in)
        weights[key] = torch.from_numpy(np.asarray(values, dtype=np.float64))
    return weights


def reference_inputs(case: Case) -> torch.Tensor:
    """The case's input clip, (1, T, 3, h, w) float64 in [0, 1]."""
    frames = np.random.RandomState(INPUT_SEED).uniform(0, 1, INPUT_SHAPE)
    h, w = case.lr_size
    return torch.from_numpy(frames[None, : case.frames, :, :h, :w].copy())


def compared_region(case: Case, output: torch.Tensor) -> torch.Tensor:
    """(O, 3, H, W) -> the part that is compared (all but ``case.border`` rows and columns)."""
    return output[..., : -case.border, : -case.border] if case.border else output


def sample_indices(case: Case, shape: tuple[int, ...]) -> np.ndarray:
    """Flat indices into the compared region (O, 3, H', W'): seeded random plus every corner."""
    index = CASES.index(case)
    count = int(np.prod(shape))
    chosen = np.random.RandomState(1000 + index).choice(count, RANDOM_SAMPLES, replace=False)
    o, c, h, w = shape
    corners = [
        np.ravel_multi_index((f, ch, y, x), shape)
        for f in range(o)
        for ch in range(c)
        for y in (0, h - 1)
        for x in (0, w - 1)
    ]
    return np.unique(np.concatenate([chosen, np.asarray(corners)]))


def summarise(case: Case, output: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """What the fixture stores of an output (O, 3, H, W), float64: the sampled values, then the
    per (frame, channel) mean and mean square over the compared region; and the frame each of
    those values belongs to."""
    region = compared_region(case, output.detach().to(torch.float64))
    shape = tuple(region.shape)
    indices = sample_indices(case, shape)
    per_plane = region.flatten(2)
    values = np.concatenate(
        [
            region.reshape(-1).numpy()[indices],
            per_plane.mean(-1).reshape(-1).numpy(),
            (per_plane**2).mean(-1).reshape(-1).numpy(),
        ]
    )
    plane_frames = np.repeat(np.arange(shape[0]), shape[1])
    frames = np.concatenate([np.unravel_index(indices, shape)[0], plane_frames, plane_frames])
    return values, frames


def relative_max_error(ours: np.ndarray, reference: np.ndarray) -> float:
    """max |ours - reference| / max |reference|."""
    return float(np.abs(ours - reference).max() / np.abs(reference).max())


def load_outputs() -> dict[str, np.ndarray]:
    with np.load(OUTPUTS_FILE) as stored:
        return {name: stored[name] for name in stored.files}


def paper_network(state_dict: dict[str, torch.Tensor], synthesis_prelu: bool, dtype=torch.float64):
    """``stno_paper`` (its preset config) holding ``state_dict``, in ``dtype``, in eval mode."""
    from stno.io.paper import paper_net_config
    from stno.nn import STNO

    config = {key: value for key, value in paper_net_config().items() if key != "_target_"}
    net = STNO(**(config | {"synthesis_prelu": synthesis_prelu})).to(dtype).eval()
    net.load_state_dict(state_dict)
    return net


def run_ours(net, case: Case, frames: torch.Tensor, times=None) -> torch.Tensor:
    """Our output for the case (O, 3, H, W), or for ``times`` instead of the case's t."""
    with torch.no_grad():
        return net(frames, [case.t] if times is None else times, case.out_size)[0]
