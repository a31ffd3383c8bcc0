"""A callback for the bf16-vs-fp32 training comparison: logs the CPU seconds spent training.

`train/cpu_seconds` is the process's CPU time (all its threads) with validation time taken out,
logged at each validation, so that validation gains can be compared at equal training CPU time
whatever else runs on the machine. Run with `data.num_workers=0` so that clip loading is counted.
"""

from __future__ import annotations

import time

import pytorch_lightning as pl


class CPUClock(pl.Callback):
    def __init__(self):
        self.validation_seconds = 0.0
        self._started = None

    def on_validation_start(self, trainer, pl_module):
        self._started = time.process_time()

    def on_validation_end(self, trainer, pl_module):
        self.validation_seconds += time.process_time() - self._started
        seconds = time.process_time() - self.validation_seconds
        for logger in trainer.loggers:
            logger.log_metrics({"train/cpu_seconds": seconds}, step=trainer.global_step)
