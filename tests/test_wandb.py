"""`logger=wandb` offline: config, metrics, sample frames and a clip land in the run's own folder."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from test_train import TINY_DATA

from stno.cli.train import train
from stno.lit.samples import clip_frames, gif_bytes


def test_clip_frames_and_gif_keep_every_frame_side_by_side(tmp_path):
    clip = torch.rand(5, 3, 6, 7)
    frames = clip_frames(clip, clip * 0, torch.ones_like(clip))
    assert frames.shape == (5, 3, 6, 21) and frames.dtype == torch.uint8
    assert torch.equal(frames[..., :7], (clip * 255).round().to(torch.uint8))
    assert frames[..., 7:14].max() == 0 and frames[..., 14:].min() == 255
    path = tmp_path / "clip.gif"
    path.write_bytes(gif_bytes(frames))
    with Image.open(path) as gif:
        assert gif.n_frames == 5 and gif.size == (21, 6)


def read_offline_run(path: Path) -> dict:
    """History, config keys, group and exit of an offline W&B run (its `run-*.wandb` file).

    The file is a LevelDB-style log (7-byte file header, 32 KiB blocks, records of
    crc32/length/type + protobuf `wandb.proto.Record`), read here without any network.
    """
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    block, position, pending, records = 32768, 7, b"", []
    while position + 7 <= len(data):
        left = block - position % block
        if left < 7:  # block trailer: padding
            position += left
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        if kind == 0 and length == 0:
            position += left
            continue
        chunk = data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind == 1:  # full record
            records.append(chunk)
        elif kind == 2:  # first piece
            pending = chunk
        elif kind == 3:  # middle piece
            pending += chunk
        elif kind == 4:  # last piece
            records.append(pending + chunk)
    run = {"history": {}, "config": set(), "group": None, "exited": False}
    for raw in records:
        record = wandb_internal_pb2.Record()
        record.ParseFromString(raw)
        kind = record.WhichOneof("record_type")
        if kind == "history":
            for item in record.history.item:
                key = item.key or "/".join(item.nested_key)
                run["history"].setdefault(key, []).append(json.loads(item.value_json))
        elif kind == "config":
            run["config"].update(update.key for update in record.config.update)
        elif kind == "run":
            run["group"] = record.run.run_group
        elif kind == "exit":
            run["exited"] = True
    return run


def test_wandb_offline_run_logs_config_metrics_frames_and_clip(train_config, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")  # never the network
    output_dir = tmp_path / "run"
    cfg = train_config(
        [
            "logger=wandb",
            "trainer=cpu",
            "trainer.max_steps=2",
            "trainer.val_check_interval=2",
            "trainer.limit_val_batches=1",
            "trainer.log_every_n_steps=1",
            *TINY_DATA,
        ],
        output_dir=output_dir,
    )
    metrics = train(cfg)

    runs = sorted((output_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, "one W&B run per stno-train run, under <output_dir>/wandb"
    run = read_offline_run(next(runs[0].glob("run-*.wandb")))
    assert run["exited"], "stno-train finishes its W&B run (the next multirun job starts its own)"
    assert run["group"] == "train"  # the task name; a multirun job gets its sweep's name
    # The resolved config, the module's hyper-parameters, metrics of training and validation.
    assert {"data", "model", "trainer", "optimized_metric", "net", "preset"} <= run["config"]
    history = run["history"]
    assert len(history["train/loss"]) == 2
    assert history["val/psnr_y"][-1] == pytest.approx(metrics["val/psnr_y"], abs=1e-4)
    assert history["val/bicubic_psnr_y"][-1] == pytest.approx(
        metrics["val/bicubic_psnr_y"], abs=1e-4
    )
    # Sample frames (bicubic | model | GT) as an image, one clip as a GIF video.
    assert history["val/samples_bicubic_model_gt/_type"] == ["images/separated"]
    width, height = (
        history["val/samples_bicubic_model_gt/width"][0],
        history["val/samples_bicubic_model_gt/height"][0],
    )
    assert width == 3 * height
    assert history["val/clip_bicubic_model_gt/_type"] == ["video-file"]
    gif_path = runs[0] / "files" / history["val/clip_bicubic_model_gt/path"][0]
    with Image.open(gif_path) as gif:
        # Every output frame of the first validation clip (sample data: 2 inputs, 1 in between).
        assert gif.n_frames >= 3 and gif.size == (3 * height, height)
        assert np.asarray(gif.convert("RGB")).std() > 1


def test_multirun_jobs_get_the_sweep_as_group_and_spawned_ddp(train_config, monkeypatch):
    from stno.lit.run import Job, prepare_run_config

    sweep_dir = Path("/somewhere/multirun/2026-11-24/21-00-00")
    cfg = prepare_run_config(
        train_config(["logger=wandb", "trainer=ddp_cpu", "trainer.strategy=ddp"]),
        Job(True, sweep_dir, 3),
    )
    assert cfg.logger.wandb.group == "2026-11-24_21-00-00"
    assert cfg.logger.wandb.name == "2026-11-24_21-00-00-3"
    assert cfg.trainer.strategy == "ddp_spawn"  # subprocess DDP would re-run the whole sweep

    single = prepare_run_config(train_config(["logger=wandb", "trainer=ddp"]))
    assert single.logger.wandb.group == "train" and single.trainer.strategy == "ddp"
