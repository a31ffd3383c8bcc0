"""Resume vs fine-tune: `resume=` continues a run or fails clearly, `init_ckpt=` takes weights only."""

from __future__ import annotations

from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from test_train import TINY_DATA

from stno.cli.train import train
from stno.errors import STNOError
from stno.io.checkpoint import CheckpointError, load_initial_weights, save_network_checkpoint
from stno.nn import STNO

# A smaller STNO than stno_tiny, for checkpoints that do not fit it.
TINY_NET = dict(
    channels=16,
    num_blocks=1,
    pyramid_channels=[8, 12, 16],
    attn_dim=16,
    heads=2,
    decoder_widths=[16, 16, 16],
    decoder_hidden=16,
)


class WeightProbe(pl.Callback):
    """Records, per training step, the step counter, optimizer state size and weight snapshots."""

    records: list[dict] = []

    def on_train_start(self, trainer, pl_module):
        WeightProbe.records = [
            {
                "step": trainer.global_step,
                "optimizer_state": len(trainer.optimizers[0].state),
                "net": {k: v.detach().clone() for k, v in pl_module.net.state_dict().items()},
            }
        ]

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        WeightProbe.records.append(
            {
                "step": trainer.global_step,
                "net": {k: v.detach().clone() for k, v in pl_module.net.state_dict().items()},
            }
        )


PROBE = ["+callbacks.probe._target_=test_finetune.WeightProbe"]


def _run(train_config, output_dir: Path, max_steps: int, extra=()):
    return train(
        train_config(
            [
                "trainer=cpu",
                f"trainer.max_steps={max_steps}",
                "trainer.val_check_interval=1000",
                "trainer.limit_val_batches=1",
                "trainer.log_every_n_steps=1",
                "callbacks.last_checkpoint.every_n_train_steps=1",
                "data.val_dataset.lr_patch=8",
                *TINY_DATA,
                *extra,
            ],
            output_dir=output_dir,
        )
    )


def _tiny_stno_checkpoint(train_config, path: Path, global_step: int = 7) -> dict:
    """A stno_tiny-shaped checkpoint with random weights, as if trained `global_step` steps."""
    from omegaconf import OmegaConf

    net_config = OmegaConf.to_container(train_config().model.net)
    net_config.pop("_target_")
    torch.manual_seed(5)
    net = STNO(**net_config)
    with torch.no_grad():
        for parameter in net.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    save_network_checkpoint(net, path, preset="stno_tiny")
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["global_step"] = global_step
    torch.save(checkpoint, path)
    return {key: value.clone() for key, value in net.state_dict().items()}


# ---- resume -----------------------------------------------------------------------------------


def test_resume_with_nothing_to_resume_is_a_clear_error(train_config, tmp_path):
    empty_run = tmp_path / "empty_run"
    empty_run.mkdir()
    cases = {
        "resume=true": "nothing to resume",
        f"resume={empty_run}": "nothing to resume, no checkpoints/last.ckpt",
        f"resume={tmp_path / 'missing'}": "nothing to resume, no such run directory",
        "ckpt_path=last": "ckpt_path=last: nothing to resume",  # Lightning would silently start from scratch
    }
    for override, message in cases.items():
        with pytest.raises(STNOError, match=message) as error:
            train(train_config([override, *TINY_DATA], output_dir=tmp_path / "new_run"))
        assert "\n" not in str(error.value)
    assert not (tmp_path / "new_run" / "checkpoints").exists()


def test_resume_a_run_directory_continues_in_it(train_config, tmp_path, capsys):
    first = tmp_path / "first"
    _run(train_config, first, 2)
    capsys.readouterr()
    _run(train_config, tmp_path / "second", 3, [f"resume={first}"])
    out = capsys.readouterr().out
    assert f"Resuming from {first / 'checkpoints' / 'last.ckpt'} (global step 2)" in out
    # The run continued in its own directory: last.ckpt there is at step 3 (optimizer kept).
    checkpoint = torch.load(first / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 3 and checkpoint["optimizer_states"][0]["state"]
    assert not (tmp_path / "second" / "checkpoints").exists()


# ---- fine-tune --------------------------------------------------------------------------------


def test_init_ckpt_starts_at_step_zero_with_the_checkpoint_weights(train_config, tmp_path, capsys):
    weights = _tiny_stno_checkpoint(train_config, tmp_path / "pretrained.ckpt", global_step=7)
    output_dir = tmp_path / "finetune"
    _run(train_config, output_dir, 1, [f"init_ckpt={tmp_path / 'pretrained.ckpt'}", *PROBE])
    out = capsys.readouterr().out
    assert "Initial weights from" in out and "trained 7 steps" in out
    start = WeightProbe.records[0]
    assert start["step"] == 0 and start["optimizer_state"] == 0
    assert start["net"].keys() == weights.keys()
    for key, value in weights.items():
        assert torch.equal(start["net"][key], value), key
    # One step later: step 1 (not 8), and the weights moved away from the checkpoint's.
    assert (
        torch.load(output_dir / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 1
    )
    after = WeightProbe.records[-1]["net"]
    assert any(not torch.equal(after[k], weights[k]) for k in weights)


def test_init_strict_false_reports_missing_and_unexpected_keys(tmp_path):
    path = tmp_path / "other.ckpt"
    torch.manual_seed(0)
    save_network_checkpoint(STNO(**TINY_NET), path, preset="other")
    checkpoint = torch.load(path, weights_only=True)
    checkpoint["state_dict"]["net.extra_head.weight"] = torch.zeros(3)
    torch.save(checkpoint, path)
    target = STNO(**{**TINY_NET, "num_blocks": 2})  # one more propagation block
    before = {key: value.clone() for key, value in target.state_dict().items()}

    with pytest.raises(CheckpointError, match="init_strict=false"):
        load_initial_weights(target, path, strict=True)

    report = load_initial_weights(target, path, strict=False)
    lines = report.splitlines()
    own, saved = set(before), {k[4:] for k in checkpoint["state_dict"] if k.startswith("net.")}
    missing, unexpected = sorted(own - saved), sorted(saved - own)
    assert missing and unexpected == ["extra_head.weight"]
    assert f"loaded {len(own & saved)} of {len(own)} tensors" in lines[0]
    assert f"  missing in the checkpoint (kept at initialisation): {len(missing)}" in lines
    assert "  unexpected in the checkpoint (ignored): 1" in lines
    assert "    extra_head.weight" in lines
    assert f"    {missing[0]}" in lines
    # Weights that fit were loaded, the missing ones kept their initial values.
    state = target.state_dict()
    for key in own & saved:
        assert torch.equal(state[key], checkpoint["state_dict"][f"net.{key}"]), key
    for key in missing:
        assert torch.equal(state[key], before[key]), key


def test_init_ckpt_errors_are_one_line(train_config, tmp_path):
    with pytest.raises(FileNotFoundError, match="init_ckpt=.*does not exist"):
        train(train_config([f"init_ckpt={tmp_path / 'nope.ckpt'}", *TINY_DATA]))
    path = tmp_path / "small.ckpt"
    save_network_checkpoint(STNO(**TINY_NET), path)
    with pytest.raises(CheckpointError, match="do not fit the model") as error:
        train(train_config([f"init_ckpt={path}", *TINY_DATA]))
    assert "\n" not in str(error.value)


def test_freeze_motion_steps_keeps_the_motion_stage_fixed_then_trains_it(train_config, tmp_path):
    _run(train_config, tmp_path / "run", 4, ["model.freeze_motion_steps=2", *PROBE])
    records = WeightProbe.records
    assert [record["step"] for record in records] == [0, 1, 2, 3, 4]

    def changed(a, b, prefix):
        keys = [k for k in a if k.startswith(prefix) and a[k].is_floating_point()]
        assert keys
        return any(not torch.equal(a[k], b[k]) for k in keys)

    start = records[0]["net"]
    for record in records[1:3]:  # after steps 1 and 2: motion frozen, the rest trains
        assert not changed(start, record["net"], "motion.")
        assert changed(start, record["net"], "propagation.")
    assert changed(records[2]["net"], records[3]["net"], "motion.")  # step 3 trains it


def test_freeze_motion_steps_needs_a_motion_stage(train_config):
    with pytest.raises(ValueError, match="has no motion stage|needs a network with a motion"):
        train(train_config(["model=bicubic_blend", "model.freeze_motion_steps=3", *TINY_DATA]))


@pytest.mark.slow
def test_stno_train_resume_with_nothing_to_resume_is_one_line(tmp_path):
    from test_train import _stno_train

    result = _stno_train(["resume=true", f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines == [
        f"stno-train: error: resume=True: nothing to resume, "
        f"{tmp_path / 'run' / 'checkpoints' / 'last.ckpt'} does not exist; give resume=<run dir "
        "or .ckpt>, or drop resume= to start a new run"
    ]
