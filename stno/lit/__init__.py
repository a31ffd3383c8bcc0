"""PyTorch Lightning parts of STNO: the LightningModule, the DataModule and checkpoint writing."""

from stno.lit.checkpoint_io import AtomicCheckpointIO
from stno.lit.datamodule import ClipDataModule
from stno.lit.module import STNOLitModule, build_from_config, charbonnier_loss

__all__ = [
    "AtomicCheckpointIO",
    "ClipDataModule",
    "STNOLitModule",
    "build_from_config",
    "charbonnier_loss",
]
