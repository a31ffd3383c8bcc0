"""STNO: space-time video super-resolution with a neural operator."""

__version__ = "0.1.0"


def load_pretrained(name=None, device="cpu"):
    """The network shipped with the package (eval mode, safetensors, no pickle) and its info.

    ``net, info = stno.load_pretrained()``; ``net(frames, times, (H, W))`` as ``stno.nn.STNO``.
    """
    from stno.io.checkpoint import load_pretrained as load

    return load(name, device=device)
