"""The built wheel (not an editable install) finds its configs and sample from any directory."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def _run(command, **kwargs):
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, (
        f"{command} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    )
    return result


@pytest.mark.slow
def test_installed_wheel_runs_stno_train_from_an_unrelated_directory(tmp_path):
    # Build without network: hatchling comes with the dev extra.
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path / "dist"),
            str(REPO_ROOT),
        ]
    )
    wheel = next((tmp_path / "dist").glob("stno-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert "stno/conf/train.yaml" in names and "stno/conf/model/stno_tiny.yaml" in names
    assert any(name.startswith("stno/assets/") and name.endswith(".mp4") for name in names)

    # A fresh venv that sees this environment's packages (torch, ...) but not its editable stno.
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)])
    venv_python = venv / "bin" / "python"
    venv_site = _run(
        [str(venv_python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]
    ).stdout.strip()
    Path(venv_site, "shared_packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    _run([str(venv_python), "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)])

    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    env = {
        key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")
    }
    env["WANDB_MODE"] = "offline"
    located = _run(
        [str(venv_python), "-c", "import stno; print(stno.__file__)"], cwd=workdir, env=env
    )
    assert Path(located.stdout.strip()).is_relative_to(venv), located.stdout

    result = _run(
        [
            str(venv / "bin" / "stno-train"),
            "debug=fdr",
            "data.batch_size=2",
            "data.train_dataset.lr_patch=8",
            "data.val_dataset.lr_patch=12",
        ],
        cwd=workdir,
        env=env,
        timeout=600,
    )
    assert "Final validation Y-PSNR of stno_tiny:" in result.stdout
    assert "Final validation Y-PSNR of bicubic_blend:" in result.stdout
    assert list((workdir / "outputs").glob("*/*/.hydra/config.yaml"))  # the run dir is under cwd
