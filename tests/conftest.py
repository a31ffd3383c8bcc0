"""Shared test fixtures: offline W&B, Hydra composition of the real configs, tiny dataset layouts."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest

# No test may reach the network: W&B runs stay on disk.
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
# The decoder's compiled pass (stno/nn/native.py) is built into a scratch cache, not ~/.cache.
os.environ.setdefault(
    "STNO_CACHE_DIR", str(Path(tempfile.gettempdir()) / f"stno-test-cache-{os.getuid()}")
)


@pytest.fixture
def one_torch_thread():
    """Run a test with one torch thread (tiny tensors; two threads thrash on a busy machine)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def compose_train_config(output_dir: Path, overrides: list[str] = ()):
    """Compose `conf/train.yaml` with `overrides`, writing into `output_dir` (no Hydra run dir)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from stno.io.configs import config_dir

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        return compose(
            config_name="train", overrides=[f"paths.output_dir={output_dir}", *overrides]
        )


@pytest.fixture
def train_config(tmp_path):
    """`train_config(overrides, output_dir=None)` -> composed config (DictConfig)."""

    def make(overrides: list[str] = (), output_dir: Path | None = None):
        return compose_train_config(output_dir or tmp_path / "run", list(overrides))

    return make


def moving_pattern_frames(num_frames: int, height: int, width: int, seed: int = 0) -> np.ndarray:
    """(num_frames, height, width, 3) uint8: a smooth random texture shifting 1 px right per frame."""
    rng = np.random.default_rng(seed)
    coarse = rng.random((height // 8 + 2, (width + num_frames) // 8 + 2, 3))
    texture = np.kron(coarse, np.ones((8, 8, 1)))[:height, : width + num_frames]
    frames = [texture[:, num_frames - i : num_frames - i + width] for i in range(num_frames)]
    return (np.stack(frames) * 255).round().astype(np.uint8)


def write_frames(
    folder: Path, frames: np.ndarray, pattern: str = "{:05d}.png", start: int = 0
) -> None:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for index, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / pattern.format(index + start))


@pytest.fixture(scope="session")
def tiny_vimeo_root(tmp_path_factory) -> Path:
    """Vimeo-90K septuplet layout: 3 train and 2 test septuplets of 160x128 frames."""
    root = tmp_path_factory.mktemp("vimeo_septuplet")
    names = ["00001/0001", "00001/0002", "00002/0001", "00003/0001", "00003/0002"]
    for seed, name in enumerate(names):
        write_frames(
            root / "sequences" / name, moving_pattern_frames(7, 128, 160, seed), "im{}.png", 1
        )
    (root / "sep_trainlist.txt").write_text("\n".join(names[:3]) + "\n")
    (root / "sep_testlist.txt").write_text("\n".join(names[3:]) + "\n")
    return root


@pytest.fixture(scope="session")
def tiny_adobe_root(tmp_path_factory) -> Path:
    """Adobe240 layout: ROOT/train/<seq> (two, 12 frames) and ROOT/test/<seq> (9 frames), 256x256."""
    root = tmp_path_factory.mktemp("adobe240")
    write_frames(root / "train" / "clip_a", moving_pattern_frames(12, 256, 256, 1))
    write_frames(root / "train" / "clip_b", moving_pattern_frames(12, 256, 256, 2))
    write_frames(root / "test" / "GOPR_test", moving_pattern_frames(9, 256, 256, 3))
    return root


@pytest.fixture(scope="session")
def tiny_frames_root(tmp_path_factory) -> Path:
    """Frame folders ROOT/<seq>/*.png: three sequences of 10 frames, 96x80."""
    root = tmp_path_factory.mktemp("frames")
    for seed in range(3):
        write_frames(root / f"seq{seed}", moving_pattern_frames(10, 80, 96, seed))
    return root
