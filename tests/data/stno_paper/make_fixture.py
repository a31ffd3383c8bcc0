"""Run the paper's reference code (hahazh/STVSR-NO) on a CPU and compare it with ``stno_paper``.

Nothing of the reference is stored in this repository: ``prepare`` copies its model files from
a checkout into a scratch folder and patches that copy to run on a CPU in any float type.

    git clone https://github.com/hahazh/STVSR-NO /tmp/STVSR-NO
    python tests/data/stno_paper/make_fixture.py prepare /tmp/STVSR-NO /tmp/stvsr_ref
    python tests/data/stno_paper/make_fixture.py fixture /tmp/stvsr_ref   # rewrites the fixture
    python tests/data/stno_paper/make_fixture.py compare /tmp/stvsr_ref --seed 1 --dtype float32
    python tests/data/stno_paper/make_fixture.py switches    # needs no reference

``compare`` fills the reference with weights of another seed, saves them as a ``.pth`` in the
reference's layout (under ``params`` with DataParallel's ``module.`` prefix), converts that file
with ``stno-convert`` and prints the relative max error of ``stno_paper`` against the
reference on every case, on the whole output.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

TESTS = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(TESTS))

import paper_reference as fixture  # noqa: E402

# The reference's model files and the edits that make them run on a CPU in any float type.
MODEL_FILES = (
    "STVSR_OP_arch.py",
    "flownet_module.py",
    "galerkin_module.py",
    "general_module.py",
    "warp_m.py",
)
PATCHES = {
    "STVSR_OP_arch.py": [
        (".cuda()", ""),
        ("dtype=torch.float)", "dtype=torch.get_default_dtype())"),
    ],
    "general_module.py": [
        ("torch.arange(n).float()", "torch.arange(n).to(torch.get_default_dtype())")
    ],
}
# Stand-ins for the helpers it imports from timm and mmcv (only used to initialise weights).
STUBS = {
    "timm/__init__.py": "",
    "timm/models/__init__.py": "",
    "timm/models/layers.py": """import torch.nn as nn


def to_2tuple(x):
    return tuple(x) if isinstance(x, (tuple, list)) else (x, x)


def trunc_normal_(tensor, mean=0.0, std=1.0):
    return nn.init.trunc_normal_(tensor, mean=mean, std=std, a=-2 * std, b=2 * std)


class DropPath(nn.Identity):
    pass
""",
    "mmcv/__init__.py": "",
    "mmcv/utils/__init__.py": "",
    "mmcv/utils/parrots_wrapper.py": "from torch.nn.modules.batchnorm import _BatchNorm  # noqa\n",
    "mmcv/cnn.py": """import torch.nn as nn


def constant_init(module, val, bias=0):
    nn.init.constant_(module.weight, val)
    if getattr(module, "bias", None) is not None:
        nn.init.constant_(module.bias, bias)


def kaiming_init(module, a=0, mode="fan_out", nonlinearity="relu", bias=0, distribution="normal"):
    nn.init.kaiming_normal_(module.weight, a=a, mode=mode, nonlinearity=nonlinearity)
    if getattr(module, "bias", None) is not None:
        nn.init.constant_(module.bias, bias)
""",
}


def prepare(checkout: Path, scratch: Path) -> None:
    """Copy the reference's model files into ``scratch`` and patch the copy."""
    source = checkout / "src" / "model"
    target = scratch / "src" / "model"
    target.mkdir(parents=True, exist_ok=True)
    for name in MODEL_FILES:
        text = (source / name).read_text()
        for old, new in PATCHES.get(name, []):
            if old not in text:
                raise SystemExit(f"{name}: expected text {old!r} not found (another commit?)")
            text = text.replace(old, new)
        (target / name).write_text(text)
    for name, text in STUBS.items():
        path = scratch / "stubs" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    commit = subprocess.run(
        ["git", "-C", str(checkout), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    (scratch / "COMMIT").write_text(commit or "unknown")
    print(f"reference (commit {commit or 'unknown'}) ready in {scratch}")


def reference_class(scratch: Path, dtype: torch.dtype):
    """The reference's ``Flow_STSR``, with ``dtype`` as torch's default float type."""
    torch.set_default_dtype(dtype)  # its grids and coordinates follow the default type
    sys.path[:0] = [str(scratch / "stubs"), str(scratch / "src")]
    from model.STVSR_OP_arch import Flow_STSR

    return Flow_STSR


def run_reference(model, case: fixture.Case, frames: torch.Tensor) -> torch.Tensor:
    """The reference's output for a case: (O, 3, H, W)."""
    with torch.no_grad():
        if not case.padded:
            return model(frames, case.t, case.out_size)[0]
        # its test scripts: reflect-pad to a multiple of 8, decode each frame at the padded
        # size times the scale, crop to the target size
        b, t, c, h, w = frames.shape
        ph, pw = (-h) % 8, (-w) % 8
        padded = F.pad(frames.reshape(-1, h, w), (0, pw, 0, ph), mode="reflect")
        padded = padded.reshape(b, t, c, h + ph, w + pw)
        scale = case.out_size[0] / h
        size = (round(scale * (h + ph)), round(scale * (w + pw)))
        features = model.muti_feat_extract(padded, case.t)
        outputs = [model.query_rgb(f[None], size)[0] for f in features]
        return torch.stack(outputs)[..., : case.out_size[0], : case.out_size[1]]


def make_fixture(scratch: Path) -> None:
    Flow_STSR = reference_class(scratch, torch.float64)
    model = Flow_STSR().eval()
    shapes = [[key, list(value.shape)] for key, value in model.state_dict().items()]
    fixture.KEYS_FILE.write_text(
        "[\n" + ",\n".join(json.dumps(entry) for entry in shapes) + "\n]\n"
    )
    stored = {}
    for case in fixture.CASES:
        model.load_state_dict(fixture.reference_weights(negative_head=case.negative_head))
        output = run_reference(model, case, fixture.reference_inputs(case))
        stored[case.name] = fixture.summarise(case, output)[0]
        print(f"{case.name}: output {tuple(output.shape)}, |max| {output.abs().max():.3f}")
    np.savez_compressed(fixture.OUTPUTS_FILE, **stored)
    print(f"wrote {fixture.KEYS_FILE} and {fixture.OUTPUTS_FILE}")


def compare(scratch: Path, seed: int, dtype: torch.dtype, init: str) -> float:
    from stno.cli.convert import main as convert_main
    from stno.io.checkpoint import load_network

    Flow_STSR = reference_class(scratch, dtype)
    torch.manual_seed(seed)
    model = Flow_STSR().eval()
    worst = 0.0
    print(f"| case | weights | rel. max error ({str(dtype).split('.')[-1]}) | max abs error |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for negative_head in (False, True):
            if init == "default":  # the reference's own initialisation, seeded
                weights = {k: v.clone() for k, v in model.state_dict().items()}
                if negative_head:
                    weights["flownet.reduce.1.weight"] = -weights["flownet.reduce.1.weight"]
            else:
                shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
                weights = fixture.reference_weights(seed, negative_head, shapes)
            model.load_state_dict(weights)
            pth = Path(folder) / f"reference_{int(negative_head)}.pth"
            ckpt = Path(folder) / f"converted_{int(negative_head)}.ckpt"
            wrapped = {"module." + k: v.to(dtype) for k, v in weights.items()}
            torch.save({"params": wrapped}, pth)
            if convert_main([str(pth), str(ckpt)]) != 0:
                raise SystemExit("stno-convert failed")
            net, _ = load_network(ckpt, expected="stno_paper")
            net = net.to(dtype)
            cases = [c for c in fixture.CASES if c.negative_head == negative_head]
            for case in cases:
                frames = fixture.reference_inputs(case).to(dtype)
                reference = run_reference(model, case, frames)
                ours = fixture.run_ours(net, case, frames)
                reference = fixture.compared_region(case, reference)
                ours = fixture.compared_region(case, ours)
                error = float((ours - reference).abs().max() / reference.abs().max())
                worst = max(worst, error)
                absolute = float((ours - reference).abs().max())
                label = "negative head slopes" if negative_head else f"seed {seed} ({init})"
                print(f"| {case.name} | {label} | {error:.2e} | {absolute:.2e} |")
    print(f"worst relative max error: {worst:.2e}")
    return worst


def switch_effects() -> None:
    """Max abs difference each ``stno_paper`` switch alone makes to ``stno_base``'s output.

    Fixture weights (converted), 3 frames of 28x44 (so padding and pair centring act: with 2
    frames the pair is the clip), t = 0.25, x2.5, float64.
    """
    from stno.io.paper import convert_state_dict, paper_net_config
    from stno.nn import STNO

    paper = {k: v for k, v in paper_net_config().items() if k != "_target_"}
    base = paper | {"synthesis_prelu": False}
    switches = ["head_norm_unbiased", "linspace_coords", "reference_attention_wiring"]
    switches += ["pair_centring", "flows_at_t", "reflect_padding", "clamp_output"]
    for key in switches:
        base[key] = not paper[key]
    folded = convert_state_dict(fixture.reference_weights()).state_dict
    unfolded = convert_state_dict(fixture.reference_weights(), fold_prelu=False).state_dict
    case = fixture.Case("effects", frames=3, t=0.25, lr_size=(28, 44), out_size=(70, 110))
    frames = fixture.reference_inputs(case)

    def output(config, weights):
        net = STNO(**config).double().eval()
        net.load_state_dict(weights)
        return fixture.run_ours(net, case, frames)

    reference = output(base, folded)
    print(f"stno_base output: min {reference.min():.3f}, max {reference.max():.3f}")
    print("| switch (alone on stno_base) | max abs difference | mean abs difference |")
    print("|---|---|---|")
    rows = [(key, base | {key: paper[key]}, folded) for key in switches]
    rows.append(
        ("synthesis_prelu (unfolded head, slopes >= 0)", base | {"synthesis_prelu": True}, unfolded)
    )
    rows.append(("all (stno_paper)", paper, folded))
    for name, config, weights in rows:
        difference = (output(config, weights) - reference).abs()
        print(f"| {name} | {difference.max():.2e} | {difference.mean():.2e} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    step = commands.add_parser("prepare", help="copy and patch the reference's model files")
    step.add_argument("checkout", type=Path, help="a checkout of hahazh/STVSR-NO")
    step.add_argument("scratch", type=Path, help="scratch folder outside this repository")
    step = commands.add_parser("fixture", help="rewrite tests/data/stno_paper from the reference")
    step.add_argument("scratch", type=Path)
    step = commands.add_parser("compare", help="stno-convert + stno_paper vs the reference")
    step.add_argument("scratch", type=Path)
    step.add_argument("--seed", type=int, default=1)
    step.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    step.add_argument(
        "--init",
        choices=("recipe", "default"),
        default="recipe",
        help="weights: the fixture's recipe with this seed, or the reference's own init",
    )
    commands.add_parser("switches", help="the effect of each stno_paper switch on stno_base")
    args = parser.parse_args()
    if args.command == "prepare":
        if args.scratch.resolve().is_relative_to(TESTS.parent):
            raise SystemExit("the scratch folder must be outside this repository")
        prepare(args.checkout, args.scratch)
    elif args.command == "switches":
        switch_effects()
    elif args.command == "fixture":
        make_fixture(args.scratch)
    else:
        compare(args.scratch, args.seed, getattr(torch, args.dtype), args.init)


if __name__ == "__main__":
    main()
