"""Side-by-side CPU speed: our presets in fp32 and bf16, FLOP/s against the matmul peak, training
samples/s, and (optionally) the reference code, each case in a fresh process, in one run.

    python benchmarks/bench_speed.py                       # network + training cases
    python benchmarks/bench_speed.py --reference /tmp/stvsr_ref   # also the reference code
    python benchmarks/bench_speed.py --only train
    python benchmarks/bench_speed.py --before /tmp/stno-before   # and an earlier commit's code

Network case: 2 LR frames of 176x320 -> 704x1280 (x4), one timestamp (3 output frames), random
weights, 2 threads. FLOPs are counted with ``torch.utils.flop_counter`` (matrix products and
convolutions; element-wise work is not counted) on the untimed warm-up call.

Training case: one optimizer step of ``stno_tiny`` on 4 clips of 2 LR frames 48x48 at x4 with
one target timestamp (the release recipe's patch), Charbonnier loss, Adam: "old" decodes every
target pixel (as before sampled-query training), "new" 4096 sampled pixels per output frame.

The reference (``--reference``): a scratch copy of hahazh/STVSR-NO prepared outside the repository
by ``tests/data/stno_paper/make_fixture.py prepare <checkout> <scratch>`` (``.cuda()`` removed,
stand-ins for its timm/mmcv init helpers), its ``Flow_STSR()`` at its defaults, one call.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from measure import machine_line

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, resource, sys, time, torch
spec = json.loads(sys.argv[1])
torch.set_num_threads(spec["threads"])
torch.manual_seed(0)
from torch.utils.flop_counter import FlopCounterMode

def peak(dtype):
    a = torch.randn(2048, 2048, dtype=dtype); b = torch.randn(2048, 2048, dtype=dtype)
    a @ b
    t0 = time.perf_counter()
    for _ in range(10):
        a @ b
    return 10 * 2 * 2048**3 / (time.perf_counter() - t0)

def network(preset):
    from omegaconf import OmegaConf
    from hydra.utils import instantiate
    return instantiate(OmegaConf.load(f"{spec['root']}/conf/model/{preset}.yaml").net)

kind = spec["kind"]
if kind == "peak":
    print(json.dumps({"fp32": peak(torch.float32), "bf16": peak(torch.bfloat16)}))
    sys.exit()
if kind == "reference":
    sys.path.insert(0, f"{spec['root']}/tests/data/stno_paper")
    from pathlib import Path
    import make_fixture
    model = make_fixture.reference_class(Path(spec["reference"]), torch.float32)().eval()
    frames = torch.rand(1, 2, 3, 176, 320)
    call = lambda: model(frames, 0.5, (704, 1280))
elif kind == "network":
    net = network(spec["preset"]).eval()
    frames = torch.rand(1, 2, 3, 176, 320)
    extra = {} if spec.get("legacy") else {"precision": spec["precision"]}
    call = lambda: net(frames, [0.5], (704, 1280), max_queries=65536, **extra)
else:  # training step
    net = network("stno_tiny").train()
    opt = torch.optim.Adam(net.parameters(), 1e-4)
    B, patch, scale, Q = 4, 48, 4, spec["queries"]
    H = patch * scale
    lr = torch.rand(B, 2, 3, patch, patch); hr = torch.rand(B, 3, 3, H, H)
    def call():
        pixels = torch.rand(B, 3, H * H).topk(Q, dim=-1).indices if Q else None
        with torch.autocast("cpu", torch.bfloat16, enabled=spec["precision"] == "bf16"):
            if pixels is None:
                out = net(lr, [0.5], (H, H))
            else:
                out = net(lr, [0.5], (H, H), pixels=pixels)
        target = hr if Q is None else hr.flatten(3).gather(3, pixels.unsqueeze(2).expand(-1, -1, 3, -1))
        loss = torch.sqrt((out.float() - target) ** 2 + 1e-6).mean()
        opt.zero_grad(); loss.backward(); opt.step()
grad = torch.enable_grad() if kind == "train" else torch.no_grad()
with grad:
    counter = FlopCounterMode(display=False)
    with counter:
        call()  # warm-up, counted
    times = []
    for _ in range(spec["repeats"]):
        t0 = time.perf_counter(); call(); times.append(time.perf_counter() - t0)
print(json.dumps({"seconds": min(times), "flops": counter.get_total_flops(),
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run(spec: dict, tree: Path | None = None) -> dict:
    """One case in a fresh process; ``tree``: run it on another checkout of STNO (its code)."""
    spec = {"root": str(tree or ROOT), "threads": 2, "repeats": 2, **spec}
    env = {**os.environ, "PYTHONPATH": str(tree)} if tree else None
    done = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps(spec)], capture_output=True, text=True, env=env
    )
    if done.returncode:
        raise RuntimeError(f"case {spec} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, help="scratch copy of the reference code")
    parser.add_argument("--only", choices=("network", "train"))
    parser.add_argument("--presets", nargs="+", default=["stno_tiny", "stno_base"])
    parser.add_argument(
        "--before",
        type=Path,
        help="a checkout of an earlier STNO commit (e.g. git worktree add /tmp/before 351c446): "
        "its network and its full-decoding training step are measured in the same run",
    )
    args = parser.parse_args()
    print(f"# CPU speed, side by side ({machine_line()})\n")
    peak = run({"kind": "peak"})
    print(
        f"matmul peak measured in this run (2048^3, 2 threads): fp32 {peak['fp32'] / 1e12:.2f} "
        f"TFLOP/s, bf16 {peak['bf16'] / 1e12:.2f} TFLOP/s\n"
    )
    if args.only in (None, "network"):
        print("2 LR frames 176x320 -> 704x1280 (x4), one timestamp, 3 output frames\n")
        print(
            "| model | precision | seconds | speed-up vs reference | TFLOP | TFLOP/s | % of matmul peak | peak RSS MiB |"
        )
        print("|---|---|---:|---:|---:|---:|---:|---:|")
        reference = None
        if args.reference:
            reference = run({"kind": "reference", "reference": str(args.reference), "repeats": 1})
            print(_row("reference (hahazh/STVSR-NO)", "fp32", reference, None, peak["fp32"]))
        for preset in args.presets:
            if args.before:
                result = run({"kind": "network", "preset": preset, "legacy": True}, args.before)
                print(_row(f"{preset} before", "fp32", result, reference, peak["fp32"]), flush=True)
            for precision in ("fp32", "bf16"):
                repeats = 1 if preset == "stno_base" else 2
                result = run(
                    {
                        "kind": "network",
                        "preset": preset,
                        "precision": precision,
                        "repeats": repeats,
                    }
                )
                print(_row(preset, precision, result, reference, peak[precision]), flush=True)
        print()
    if args.only in (None, "train"):
        print("Training step of stno_tiny: 4 clips, LR 48x48 -> 192x192 (x4), one timestamp\n")
        print("| recipe | precision | s / step | samples / s | speed-up vs old |")
        print("|---|---|---:|---:|---:|")
        old = None
        if args.before:
            spec = {"kind": "train", "queries": None, "precision": "fp32", "repeats": 3}
            old = run(spec, args.before)["seconds"]
            print(f"| before (code of {args.before}) | fp32 | {old:.3f} | {4 / old:.2f} | 1.00x |")
        for label, queries, precision in (
            ("old: every target pixel", None, "fp32"),
            ("new: 4096 sampled pixels per frame", 4096, "fp32"),
            ("new: 4096 sampled pixels per frame", 4096, "bf16"),
        ):
            result = run(
                {"kind": "train", "queries": queries, "precision": precision, "repeats": 3}
            )
            old = old or result["seconds"]
            print(
                f"| {label} | {precision} | {result['seconds']:.3f} | {4 / result['seconds']:.2f} | "
                f"{old / result['seconds']:.2f}x |",
                flush=True,
            )


def _row(name, precision, result, reference, peak) -> str:
    speedup = "" if reference is None else f"{reference['seconds'] / result['seconds']:.2f}x"
    rate = result["flops"] / result["seconds"]
    return (
        f"| {name} | {precision} | {result['seconds']:.2f} | {speedup} | {result['flops'] / 1e12:.3f} | "
        f"{rate / 1e12:.3f} | {100 * rate / peak:.0f}% | {result['peak_rss_mib']:.0f} |"
    )


if __name__ == "__main__":
    main()
