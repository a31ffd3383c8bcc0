"""`stno-infer`: any video (file or frame folder) to high resolution and high frame rate.

Examples:
    stno-infer input=clip.mp4 output=clip_x4_x2.mp4 ckpt_path=last.ckpt space_scale=4 time_scale=2
    stno-infer input=frames/ output=out_frames preset=bicubic_blend out_size=[720,1280] time_scale=4

Streams the input through overlapping windows (memory does not grow with length), writes
exactly (N - 1) * time_scale + 1 frames at input fps * time_scale, and renames the output into
place only when complete. The run itself is `stno.inference.run.infer_from_config`.
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig

from stno.cli.common import PRESET_ALIAS, hydra_entry, one_line_errors
from stno.inference.run import infer_from_config


@one_line_errors("stno-infer")
def run(cfg: DictConfig) -> None:
    infer_from_config(cfg)


def main() -> Any:
    return hydra_entry("infer", run, PRESET_ALIAS)


if __name__ == "__main__":
    main()
