"""Sweep summaries: a multirun ends with a table of its jobs' `result.json` (`stno.lit.results`).

    stno-train -m experiment=quickstart model.optimizer.lr=2e-4,5e-4
    # -> multirun/<date>/<time>/{0,1}/result.json and multirun/<date>/<time>/summary.{csv,md}

`SweepSummary` is a Hydra callback (`hydra.callbacks` in `conf/hydra/default.yaml`): when a
multirun ends it reads every job's `result.json` and `.hydra/overrides.yaml` and writes one row
per job. `python -m stno.cli.sweep <sweep dir>` writes the same table again (e.g. after a crash).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from stno.lit.results import write_summary


class SweepSummary(Callback):
    """Hydra callback: when a multirun (basic or Optuna sweeper) ends, tabulate its jobs."""

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        csv_path, md_path = write_summary(sweep_dir)
        print(f"Sweep summary: {md_path.resolve()} (and {csv_path.name})", flush=True)
        print(md_path.read_text(), flush=True)


def main(argv: list[str] | None = None) -> int:
    """`python -m stno.cli.sweep SWEEP_DIR`: (re)write the summary of a finished sweep."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not Path(args[0]).is_dir():
        print(
            "usage: python -m stno.cli.sweep SWEEP_DIR (a multirun/<date>/<time> folder)",
            file=sys.stderr,
        )
        return 2
    _, md_path = write_summary(args[0])
    print(md_path.read_text(), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
