"""`stno-convert`: turn the paper authors' released weights into an STNO checkpoint.

    stno-convert STVSR_NO.pth stno_paper.ckpt        # or: python -m stno.cli.convert ...

The reference code (``hahazh/STVSR-NO``, class ``Flow_STSR``) has the layers of our ``stno_base``
under other names and, in two places, other layouts. Every tensor of its state dict is renamed
(and reshaped where needed) into the ``stno_paper`` network, whose switches restore the
reference's behaviour; the result is a checkpoint that ``stno-eval``, ``stno-infer`` and
``init_ckpt=`` read with ``model=stno_paper``.

Layout changes:
- the decoder lift (a 1x1 conv there, ``conv00``) takes ``[4 relative coordinates, 4 x C
  features, cell]``; ours takes ``[rel_k, features_k for each of the 4 neighbours k, cell]``:
  its input columns are permuted;
- ``fc1``/``fc2`` (1x1 convs there) become linear layers (the 1x1 kernel is squeezed);
- the synthesis head ``clamp(PReLU(conv([merge, res])))`` is folded into ours,
  ``clamp(merge + conv'([merge, res]))`` with ``conv' = conv - identity on merge``: exact when
  every PReLU slope is >= 0 (a negative input then gives <= 0 either way, clamped to 0). With a
  negative slope the checkpoint keeps the PReLU (``synthesis_prelu: true``) and says so.

The file is read with ``torch.load(weights_only=True)``: no code stored in it runs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from stno.errors import ConversionError
from stno.io.configs import preset_net_config

__all__ = [
    "ConversionError",
    "Conversion",
    "read_reference_state_dict",
    "convert_state_dict",
    "paper_net_config",
    "convert_checkpoint",
]

PRESET = "stno_paper"
# Wrappers a saved state dict may sit in, in the order they are tried (BasicSR keeps the EMA
# weights in ``params_ema`` next to ``params``).
_WRAPPERS = ("params_ema", "params", "state_dict", "model", "net")


# The reference's per-level modules and ours: its decoders are named by the level they start at.
def _pairs(text: str) -> dict[str, str]:
    """``"a:b c:d"`` -> ``{"a": "b", "c": "d"}``."""
    return dict(pair.split(":") for pair in text.split())


_ENCODER_LEVELS = {"pyramid2": "0", "pyramid3": "1", "pyramid4": "2"}
_DECODERS = {"decoder4": "decoder8", "decoder3": "decoder4", "decoder2": "decoder2"}
_ATTENTION = {"decoder4": "attn8", "decoder3": "attn4"}
# layer names of the reference -> ours ("theirs:ours" pairs)
_RESBLOCK = _pairs("conv1:conv1 conv2:side1 conv3:conv2 conv4:side2 conv5:conv3 prelu:act")
_ATTENTION_LAYERS = _pairs(
    "norm1:norm1 norm2:norm2 attn1.q:to_q attn1.kv:to_kv attn1.cor_embed:coord_embed "
    "attn1.kln:k_norm attn1.vln:v_norm attn1.corln:coord_norm attn1.o_proj:out_proj "
    "attn1.o_m_proj:motion_proj mlp.fc1:mlp.fc1 mlp.dwconv.dwconv:mlp.dwconv mlp.fc2:mlp.fc2"
)
_BRANCHES = {"backward_branch": "backward_trunk", "forward_branch": "forward_trunk"}
_DECODER_HEAD = {
    "fc1": "decoder.project.0",
    "fc2": "decoder.project.2",
    "short_cut.0": "decoder.shortcut.0",
    "short_cut.2": "decoder.shortcut.2",
}


@dataclass
class Conversion:
    """Result of :func:`convert_state_dict`.

    state_dict: our weights (keys of ``STNO``, without ``net.``); unplaced: reference keys the
    converter could not place; notes: what it did that a user should know (one line each);
    synthesis_prelu: whether the network needs the PReLU synthesis head.
    """

    state_dict: dict[str, torch.Tensor] = field(default_factory=dict)
    unplaced: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    synthesis_prelu: bool = False


def read_reference_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], str]:
    """The reference's state dict from ``path`` (safe loading) and where in the file it was.

    Accepts a raw state dict or one wrapped under ``params_ema``, ``params``, ``state_dict``,
    ``model`` or ``net``, with or without DataParallel's ``module.`` prefix.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConversionError(f"no such file: {path}")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types on foreign or corrupt files
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        if found:
            raise ConversionError(
                f"{path} stores Python objects ({found.group(1)}) that safe (weights only) "
                "loading refuses; the reference's weights are tensors only"
            ) from error
        raise ConversionError(
            f"{path} is not a PyTorch weights file (corrupt or another file type)"
        ) from error
    where = "the file itself"
    while isinstance(loaded, Mapping) and not _is_state_dict(loaded):
        wrapper = next((key for key in _WRAPPERS if isinstance(loaded.get(key), Mapping)), None)
        if wrapper is None:
            break
        loaded, where = loaded[wrapper], f"'{wrapper}'"
    if not isinstance(loaded, Mapping) or not _is_state_dict(loaded):
        raise ConversionError(
            f"{path} holds no state dict of tensors (looked in {', '.join(_WRAPPERS)} and the top level)"
        )
    state_dict = {
        (key[len("module.") :] if key.startswith("module.") else key): value
        for key, value in loaded.items()
        if isinstance(value, torch.Tensor)
    }
    return state_dict, where


def _is_state_dict(candidate: Mapping) -> bool:
    return bool(candidate) and all(
        isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in candidate.items()
    )


def _encoder(level: str, conv: str, part: str, kind: str) -> str:
    return f"motion.pyramid.levels.{_ENCODER_LEVELS[level]}.{conv}.{part}.{kind}"


def _flow_decoder(decoder: str, rest: str) -> str | None:
    decoder = _DECODERS[decoder]
    block = re.fullmatch(r"1\.(conv[1-5]|prelu)\.(.+)", rest)
    if block:
        return f"motion.{decoder}.body.1.{_RESBLOCK[block.group(1)]}.{block.group(2)}"
    if re.fullmatch(r"(0\.[01]|2)\.(weight|bias)", rest):
        return f"motion.{decoder}.body.{rest}"
    return None


def _patch_embed(decoder: str, part: str, kind: str) -> str:
    return f"motion.{_ATTENTION[decoder]}.{'embed' if part == 'proj' else 'embed_norm'}.{kind}"


def _motionformer(decoder: str, layer: str, kind: str) -> str | None:
    indexed = re.fullmatch(r"(attn1\.o_(?:m_)?proj)\.([02])", layer)
    if indexed:
        layer, kind = indexed.group(1), f"{indexed.group(2)}.{kind}"
    if layer not in _ATTENTION_LAYERS:
        return None
    return f"motion.{_ATTENTION[decoder]}.{_ATTENTION_LAYERS[layer]}.{kind}"


def _branch(branch: str, rest: str) -> str | None:
    trunk = _BRANCHES[branch]
    block = re.fullmatch(r"2\.(\d+)\.(conv1|conv2|relu)\.(weight|bias)", rest)
    if block:
        index, layer, kind = block.groups()
        layer = "act" if layer == "relu" else layer
        return f"propagation.{trunk}.body.{int(index) + 2}.{layer}.{kind}"
    if re.fullmatch(r"0\.(weight|bias)|1\.weight", rest):
        return f"propagation.{trunk}.body.{rest}"
    return None


def _head(layer: str, kind: str) -> str:
    return f"{_DECODER_HEAD[layer]}.{kind}"


# (pattern of a reference key, our name from its groups) for tensors that keep their layout
_RENAMES = [
    (r"flownet\.encoder\.(pyramid[234])\.([01])\.([01])\.(weight|bias)", _encoder),
    (r"flownet\.(decoder[234])\.convblock\.(.+)", _flow_decoder),
    (r"flownet\.(decoder[34])\.patch_embed\.(proj|norm)\.(weight|bias)", _patch_embed),
    (r"flownet\.(decoder[34])\.motionformer\.(.+)\.(weight|bias)", _motionformer),
    (r"(backward_branch|forward_branch)\.main\.(.+)", _branch),
    (r"(fc1|fc2|short_cut\.[02])\.(weight|bias)", _head),
]


def _rename(key: str) -> str | None:
    """Our name for a reference key whose tensor keeps its layout, or None."""
    for pattern, rename in _RENAMES:
        found = re.fullmatch(pattern, key)
        if found:
            return rename(*found.groups())
    return None


def _lift_weight(weight: torch.Tensor) -> torch.Tensor:
    """The reference's ``conv00`` weight (hidden, 4 (C + 2) + 2, 1, 1) in our column order.

    Reference columns: ``[rel_0..rel_3 (2 each), f_0..f_3 (C each), cell (2)]``; ours:
    ``[rel_k, f_k for k = 0..3, cell]`` with the same neighbour order (row, then column).
    """
    weight = weight.reshape(weight.shape[0], -1)
    channels = (weight.shape[1] - 10) // 4
    if 4 * (channels + 2) + 2 != weight.shape[1]:
        raise ConversionError(f"conv00 has {weight.shape[1]} inputs, not 4 (C + 2) + 2")
    columns = []
    for k in range(4):
        columns.append(weight[:, 2 * k : 2 * k + 2])
        columns.append(weight[:, 8 + k * channels : 8 + (k + 1) * channels])
    columns.append(weight[:, -2:])
    return torch.cat(columns, dim=1)


def convert_state_dict(
    reference: Mapping[str, torch.Tensor], fold_prelu: bool = True
) -> Conversion:
    """Rename and reshape the reference's tensors into ``STNO`` keys.

    Args:
        reference: the reference's state dict (``module.`` prefix already removed).
        fold_prelu: fold the synthesis head's PReLU into our head when its slopes allow it
            (all >= 0); False keeps it (``synthesis_prelu``) whatever the slopes.
    """
    result = Conversion()
    for key, value in reference.items():
        if key in ("flownet.reduce.0.weight", "flownet.reduce.0.bias", "flownet.reduce.1.weight"):
            continue  # the synthesis head, below
        if key == "conv00.weight":
            result.state_dict["decoder.lift.weight"] = _lift_weight(value)
            continue
        if key == "conv00.bias":
            result.state_dict["decoder.lift.bias"] = value
            continue
        ours = _rename(key)
        if ours is None:
            result.unplaced.append(key)
            continue
        if re.fullmatch(r"fc[12]\.weight", key):
            value = value.reshape(value.shape[0], -1)  # 1x1 conv -> linear
        result.state_dict[ours] = value

    head = [reference.get(k) for k in ("flownet.reduce.0.weight", "flownet.reduce.0.bias")]
    slopes = reference.get("flownet.reduce.1.weight")
    if head[0] is None or head[1] is None or slopes is None:
        result.notes.append("the synthesis head (flownet.reduce.*) is incomplete: not converted")
        for key in ("flownet.reduce.0.weight", "flownet.reduce.0.bias", "flownet.reduce.1.weight"):
            if key in reference:
                result.unplaced.append(key)
        return result
    weight, bias = head
    result.state_dict["motion.fuse.bias"] = bias
    if fold_prelu and bool((slopes >= 0).all()):
        # clamp(PReLU(y), 0, 1) == clamp(y, 0, 1) for slopes >= 0; y = merge + (conv - identity)
        folded = weight.clone()
        centre = (weight.shape[-2] // 2, weight.shape[-1] // 2)
        for channel in range(weight.shape[0]):
            folded[channel, channel, centre[0], centre[1]] -= 1
        result.state_dict["motion.fuse.weight"] = folded
        result.notes.append(
            "synthesis head: PReLU slopes "
            f"{[round(float(s), 4) for s in slopes]} are >= 0: folded into our head (exact)"
        )
    else:
        result.state_dict["motion.fuse.weight"] = weight
        result.state_dict["motion.fuse_act.weight"] = slopes
        result.synthesis_prelu = True
        why = "kept as asked" if not fold_prelu else "a slope is < 0, so it cannot be folded"
        result.notes.append(
            f"synthesis head: PReLU slopes {[round(float(s), 4) for s in slopes]}: {why}; "
            "the checkpoint sets synthesis_prelu: true (fine-tune with "
            "model.net.synthesis_prelu=true)"
        )
    return result


def paper_net_config() -> dict:
    """The net config of the ``stno_paper`` preset (``conf/model/stno_paper.yaml``)."""
    return preset_net_config(PRESET)


def convert_checkpoint(
    reference_path: str | Path, out_path: str | Path, fold_prelu: bool = True
) -> tuple[Path, Conversion]:
    """Convert the reference's weights file into an STNO checkpoint (preset ``stno_paper``).

    Raises ConversionError when the file is not the reference's layout (a tensor that cannot be
    placed, or a network weight that is missing or has another shape).
    """
    from stno.io.checkpoint import build_network, save_network_checkpoint

    reference, where = read_reference_state_dict(reference_path)
    conversion = convert_state_dict(reference, fold_prelu=fold_prelu)
    conversion.notes.insert(0, f"read {len(reference)} tensors from {where} of {reference_path}")
    config = paper_net_config()
    config["synthesis_prelu"] = conversion.synthesis_prelu
    net = build_network(config)
    own = net.state_dict()
    missing = sorted(set(own) - set(conversion.state_dict))
    wrong = [
        f"{key} {tuple(value.shape)} (network: {tuple(own[key].shape)})"
        for key, value in conversion.state_dict.items()
        if key in own and tuple(value.shape) != tuple(own[key].shape)
    ]
    problems = []
    if conversion.unplaced:
        problems.append(
            f"{len(conversion.unplaced)} tensors could not be placed: {', '.join(conversion.unplaced[:8])}"
        )
    if missing:
        problems.append(f"{len(missing)} network weights have no tensor: {', '.join(missing[:8])}")
    if wrong:
        problems.append(f"{len(wrong)} tensors have another shape: {', '.join(wrong[:4])}")
    if problems:
        raise ConversionError(
            f"{reference_path} is not in the layout of the reference STNO code: {'; '.join(problems)}"
        )
    net.load_state_dict({key: value.float() for key, value in conversion.state_dict.items()})
    path = save_network_checkpoint(net, out_path, preset=PRESET)
    return path, conversion
