"""notebooks/stno_results.ipynb: committed without outputs, and it runs (baseline and checkpoint).

The slow tests execute the notebook with nbclient in a fresh kernel (no display: the inline
backend renders with Agg; W&B disabled; nothing reaches the network) and check what it prints.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "stno_results.ipynb"
NUM_FIGURES = 4  # frames, zoomed crops, error maps, per-frame PSNR


def read_notebook():
    import nbformat

    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    return notebook


def execute(tmp_path: Path, monkeypatch, ckpt: Path | None) -> tuple[str, int]:
    """Run the notebook in a kernel started in ``tmp_path``; (all printed text, number of figures)."""
    from nbclient import NotebookClient

    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend shows figures
    if ckpt is None:
        monkeypatch.delenv("STNO_CKPT", raising=False)
    else:
        monkeypatch.setenv("STNO_CKPT", str(ckpt))
    notebook = read_notebook()
    client = NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError with the cell's traceback on any error
    text, figures = [], 0
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            if output.output_type == "stream":
                text.append(output.text)
            figures += "image/png" in output.get("data", {})
    return "".join(text), figures


def table_rows(text: str) -> list[list[str]]:
    """The per-frame rows of the printed table: [frame, time, kind, values...]."""
    return [
        line.split()
        for line in text.splitlines()
        if re.match(r"\s+\d+\s+[\d.]+\s+(input|synth)", line)
    ]


def test_notebook_is_committed_without_outputs():
    notebook = read_notebook()
    code_cells = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code_cells
    for cell in code_cells:
        assert cell.outputs == [], "strip outputs before committing (see notebooks/README.md)"
        assert cell.execution_count is None
    parameters = [cell for cell in code_cells if "parameters" in cell.metadata.get("tags", [])]
    assert len(parameters) == 1 and "CKPT_PATH = None" in parameters[0].source
    assert notebook.metadata.kernelspec.name == "python3"


def expected_bicubic_blend_psnr() -> list[float]:
    """Y-PSNR of bicubic upsampling + linear blending on the notebook's default clip, built here."""
    from stno.data import read_video_frames, sample_video_path
    from stno.ops.imresize import imresize
    from stno.ops.metrics import frame_metrics

    # notebook defaults: START_FRAME 20, 3 inputs every 2nd frame, x4, CROP (40, 96, 192, 288)
    hr = read_video_frames(sample_video_path(), 20, 5).float() / 255
    hr = hr[:, :, 40:232, 96:384]
    lr = torch.round(imresize(hr[::2], out_size=(48, 72)).clamp(0, 1) * 255) / 255
    up = imresize(lr, out_size=(192, 288))
    blended = torch.stack([up[0], (up[0] + up[1]) / 2, up[1], (up[1] + up[2]) / 2, up[2]])
    return frame_metrics(blended.clamp(0, 1), hr)["psnr_y"].tolist()


@pytest.mark.slow
def test_notebook_runs_with_the_baseline(tmp_path, monkeypatch):
    text, figures = execute(tmp_path, monkeypatch, ckpt=None)
    assert "model: bicubic_blend" in text
    assert figures == NUM_FIGURES
    rows = table_rows(text)
    assert [row[2] for row in rows] == ["input", "synthesised", "input", "synthesised", "input"]
    assert [float(row[1]) for row in rows] == [0, 0.5, 1, 1.5, 2]
    printed = [float(row[3]) for row in rows]  # bicubic_blend Y-PSNR
    assert printed == pytest.approx(expected_bicubic_blend_psnr(), abs=0.006)
    assert not list(tmp_path.iterdir()), "the notebook must not write files"


@pytest.mark.slow
def test_notebook_runs_with_a_checkpoint(tmp_path, monkeypatch):
    from stno.io.checkpoint import save_network_checkpoint
    from stno.io.configs import config_dir
    from stno.nn import STNO

    net_config = OmegaConf.to_container(
        OmegaConf.load(config_dir() / "model" / "stno_tiny.yaml").net
    )
    torch.manual_seed(0)
    net = STNO(**{key: value for key, value in net_config.items() if key != "_target_"})
    ckpt = save_network_checkpoint(net, tmp_path / "ckpt" / "last.ckpt", preset="stno_tiny")
    workdir = tmp_path / "work"
    workdir.mkdir()

    text, figures = execute(workdir, monkeypatch, ckpt=ckpt)
    assert "model: stno_tiny" in text and f"checkpoint: {ckpt}" in text
    assert figures == NUM_FIGURES
    header = next(line for line in text.splitlines() if line.lstrip().startswith("frame"))
    assert "stno_tiny Y-PSNR" in header and "bicubic_blend Y-PSNR" in header
    rows = table_rows(text)
    assert len(rows) == 5 and all(len(row) == 3 + 4 for row in rows)
    # the baseline column beside the model is the same baseline as without a checkpoint
    assert [float(row[4]) for row in rows] == pytest.approx(
        expected_bicubic_blend_psnr(), abs=0.006
    )
    gain = re.search(r"gain of stno_tiny over bicubic_blend: ([-+][\d.]+) dB", text)
    mean_gain = sum(float(row[3]) - float(row[4]) for row in rows) / len(rows)
    assert gain and float(gain.group(1)) == pytest.approx(mean_gain, abs=0.011)


def test_strip_outputs_clears_outputs_and_timings(tmp_path):
    import importlib.util

    import nbformat

    spec = importlib.util.spec_from_file_location(
        "strip_outputs", NOTEBOOK.parent / "strip_outputs.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    notebook = read_notebook()
    cell = next(cell for cell in notebook.cells if cell.cell_type == "code")
    cell.outputs = [nbformat.v4.new_output("stream", text="hello\n")]
    cell.execution_count = 3
    cell.metadata["execution"] = {"iopub.status.idle": "2026-01-01T00:00:00Z"}
    path = tmp_path / "run.ipynb"
    nbformat.write(notebook, path)
    assert module.strip_outputs(str(path)) is True
    stripped = nbformat.read(path, as_version=4)
    first = next(cell for cell in stripped.cells if cell.cell_type == "code")
    assert (
        first.outputs == [] and first.execution_count is None and "execution" not in first.metadata
    )
    assert module.strip_outputs(str(path)) is False
