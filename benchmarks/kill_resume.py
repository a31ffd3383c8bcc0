"""A run killed with SIGKILL and resumed, against the same run uninterrupted (issue 8).

    python benchmarks/kill_resume.py /tmp/kill_resume --max-steps 120 --every 50 --workers 2

Runs `stno-train experiment=quickstart` twice in fresh directories: once to the end, once
killed (the whole process group, DataLoader workers included) `--kill-after` seconds after its
first `last.ckpt` appears, then started again in the same directory. Prints the step each
`last.ckpt` holds, the final validation Y-PSNR of both runs and the largest weight difference.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch


def _command(run_dir: Path, args: argparse.Namespace) -> list[str]:
    return [
        sys.executable,
        "-m",
        "stno.cli.train",
        f"hydra.run.dir={run_dir}",
        "experiment=quickstart",
        "logger=csv",
        f"trainer.max_steps={args.max_steps}",
        f"trainer.val_check_interval={args.max_steps}",
        f"callbacks.last_checkpoint.every_n_train_steps={args.every}",
        f"data.num_workers={args.workers}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--max-steps", type=int, default=120)
    parser.add_argument("--every", type=int, default=50)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--kill-after", type=float, default=1.0)
    args = parser.parse_args()
    shutil.rmtree(args.folder, ignore_errors=True)
    env = dict(os.environ, OMP_NUM_THREADS="1", WANDB_MODE="offline")
    uninterrupted, killed = args.folder / "uninterrupted", args.folder / "killed"
    subprocess.run(_command(uninterrupted, args), env=env, capture_output=True, check=True)

    process = subprocess.Popen(
        _command(killed, args),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    last = killed / "checkpoints" / "last.ckpt"
    while process.poll() is None and not last.is_file():
        time.sleep(0.05)
    time.sleep(args.kill_after)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    killed_at = torch.load(last, weights_only=True)["global_step"]
    subprocess.run(_command(killed, args), env=env, capture_output=True, check=True)
    print(f"killed, then resumed from the checkpoint of step {killed_at}")

    weights = {}
    for name, run_dir in (("uninterrupted", uninterrupted), ("killed+resumed", killed)):
        result = json.loads((run_dir / "result.json").read_text())
        checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
        weights[name] = checkpoint["state_dict"]
        print(
            f"{name}: last.ckpt step {checkpoint['global_step']}, steps {result['steps']}, "
            f"final val Y-PSNR {result['final_psnr_y']:.4f} dB"
        )
    a, b = weights.values()
    difference = max(float((a[key] - b[key]).abs().max()) for key in a)
    print(f"largest weight difference: {difference:.3g}")


if __name__ == "__main__":
    main()
