"""Put a trained checkpoint into the package as the shipped model (stno/weights/<preset>/).

    python experiments/release/ship.py <run dir>/checkpoints/<file>.ckpt [--card experiments/release/README.md]

Writes ``model.safetensors`` (the EMA weights, config in the metadata: loads without pickle),
``config.json`` (the network config and the training record, for people and tools) and
``README.md`` (the model card: this folder's card text, whose figures come from the commands in
it). The training data's CC BY 4.0 attribution is part of the card.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from stno.io.checkpoint import export_weights, load_network

ROOT = Path(__file__).resolve().parents[2]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--card", type=Path, default=Path(__file__).with_name("MODEL_CARD.md"))
    args = parser.parse_args()
    raw = torch.load(args.checkpoint, map_location="cpu", weights_only=True, mmap=True)
    _net, info = load_network(args.checkpoint)
    folder = ROOT / "stno" / "weights" / info["preset"]
    record = {
        "source_checkpoint": args.checkpoint.name,
        "global_step": info["global_step"],
        "epoch": info["epoch"],
        "recipe": "conf/experiment/release.yaml",
    }
    export_weights(args.checkpoint, folder / "model.safetensors", **record)
    config = {
        "preset": info["preset"],
        "net": info["net_config"],
        "weights": info["weights"],
        "num_parameters": info["num_parameters"],
        **record,
        "train_hyper_parameters": {
            key: value
            for key, value in (raw.get("hyper_parameters") or {}).items()
            if key != "net" and isinstance(value, (int, float, str, bool, type(None)))
        },
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (folder / "README.md").write_text(args.card.read_text())
    print(
        f"shipped {info['preset']} (step {info['global_step']}, {info['weights']} weights) -> {folder}"
    )


if __name__ == "__main__":
    main()
