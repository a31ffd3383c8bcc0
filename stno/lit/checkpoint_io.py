"""Checkpoint writing that never leaves a torn file behind, and survives a power loss.

Lightning (>= 2.4) saves atomically too, but through fsspec: the whole checkpoint is serialised in
memory first, and nothing is flushed to disk before the rename. This plugin writes through
``stno.io.files`` (temporary file in the same folder, ``fsync``, rename, ``fsync`` of the folder),
whose orphaned temporaries the next run removes.
"""

from __future__ import annotations

from typing import Any

from pytorch_lightning.plugins.io import TorchCheckpointIO

from stno.io.checkpoint import atomic_torch_save


class AtomicCheckpointIO(TorchCheckpointIO):
    """Save each checkpoint to a temporary file in the same folder, then `os.replace` it.

    A run killed while saving (pre-emption, Ctrl-C, out of disk) keeps the previous complete
    `last.ckpt`, so starting again always resumes from a loadable file. Remote paths
    (`s3://...`) fall back to Lightning's default writer.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError(
                "AtomicCheckpointIO does not take storage_options; drop them or use TorchCheckpointIO"
            )
        if "://" in str(path):
            super().save_checkpoint(checkpoint, path)
            return
        atomic_torch_save(checkpoint, path)
