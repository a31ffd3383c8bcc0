"""Small plotting helpers for looking at ST-VSR results (used by ``notebooks/stno_results.ipynb``).
The array helpers they use (crops, error maps, display ranges) are in :mod:`stno.evaluation.images`
and exported here too.

Images are (3, H, W) RGB or (H, W) grey, float in [0, 1], as torch tensors or numpy arrays.
matplotlib is imported inside the functions that draw, so importing this module costs nothing;
figures are made with ``matplotlib.pyplot`` and returned (a notebook shows them inline).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from stno.evaluation.images import (
    Box,
    as_numpy,
    crop,
    detail_box,
    error_map,
    to_display,
    upscale_nearest,
)

__all__ = [
    "as_numpy",
    "to_display",
    "upscale_nearest",
    "error_map",
    "detail_box",
    "crop",
    "show_frame_grid",
    "show_error_maps",
    "plot_frame_psnr",
    "frame_table",
]


def _grid(num_rows: int, num_cols: int, panel_height: float, aspect: float):
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(
        num_rows,
        num_cols,
        figsize=(num_cols * panel_height * aspect, num_rows * panel_height + 0.3),
        squeeze=False,
        constrained_layout=True,
    )
    for axis in axes.flat:
        axis.set_xticks([])
        axis.set_yticks([])
    return figure, axes


def show_frame_grid(
    columns: Mapping[str, Sequence],
    row_labels: Sequence[str] | None = None,
    box: Box | None = None,
    panel_height: float = 2.0,
    missing_text: str = "no input",
):
    """A grid of frames: one column per entry of ``columns``, one row per frame.

    Args:
        columns: title -> list of images ((3, H, W) or (H, W) in [0, 1]); every list has the same
            length; ``None`` entries draw an empty panel with ``missing_text``.
        row_labels: one label per row, written left of the first column.
        box: optional (top, left, height, width) drawn as a rectangle on every panel.
        panel_height: inches per row.

    Returns:
        the matplotlib Figure (rows x columns axes).
    """
    from matplotlib.patches import Rectangle

    titles = list(columns)
    lengths = {len(columns[title]) for title in titles}
    if not titles or len(lengths) != 1 or 0 in lengths:
        raise ValueError(
            "show_frame_grid: need at least one column, all with the same number of frames"
        )
    num_rows = lengths.pop()
    if row_labels is not None and len(row_labels) != num_rows:
        raise ValueError(f"show_frame_grid: {len(row_labels)} row labels for {num_rows} rows")
    first = next(image for title in titles for image in columns[title] if image is not None)
    H, W = as_numpy(first).shape[-2:]
    figure, axes = _grid(num_rows, len(titles), panel_height, W / H)
    for col, title in enumerate(titles):
        axes[0, col].set_title(title, fontsize=9)
        for row, image in enumerate(columns[title]):
            axis = axes[row, col]
            if image is None:
                axis.set_facecolor("0.92")
                axis.text(
                    0.5,
                    0.5,
                    missing_text,
                    ha="center",
                    va="center",
                    fontsize=8,
                    transform=axis.transAxes,
                )
                continue
            display = to_display(image)
            axis.imshow(
                display,
                cmap="gray" if display.ndim == 2 else None,
                vmin=0,
                vmax=1,
                interpolation="nearest",
            )
            if box is not None:
                top, left, height, width = box
                axis.add_patch(
                    Rectangle(
                        (left - 0.5, top - 0.5),
                        width,
                        height,
                        fill=False,
                        edgecolor="yellow",
                        linewidth=1.2,
                    )
                )
    if row_labels is not None:
        for row, label in enumerate(row_labels):
            axes[row, 0].set_ylabel(label, fontsize=8)
    return figure


def show_error_maps(
    columns: Mapping[str, Sequence],
    row_labels: Sequence[str] | None = None,
    vmax: float | None = None,
    panel_height: float = 2.0,
):
    """Error maps (e.g. from :func:`error_map`) on one shared colour scale, with a colour bar.

    Args:
        columns: title -> list of maps, (3, H, W) (averaged over colour for display) or (H, W).
        vmax: top of the colour scale; None: the 99.5th percentile of all maps (a few outliers
            would otherwise wash the rest out).

    Returns:
        the matplotlib Figure.
    """
    titles = list(columns)
    maps = {
        title: [m.mean(axis=0) if m.ndim == 3 else m for m in map(as_numpy, columns[title])]
        for title in titles
    }
    lengths = {len(maps[title]) for title in titles}
    if not titles or len(lengths) != 1 or 0 in lengths:
        raise ValueError(
            "show_error_maps: need at least one column, all with the same number of maps"
        )
    num_rows = lengths.pop()
    if vmax is None:
        vmax = float(
            np.percentile(np.concatenate([m.ravel() for ms in maps.values() for m in ms]), 99.5)
        )
        vmax = vmax if vmax > 0 else 1.0
    H, W = maps[titles[0]][0].shape
    figure, axes = _grid(num_rows, len(titles), panel_height, W / H)
    picture = None
    for col, title in enumerate(titles):
        axes[0, col].set_title(title, fontsize=9)
        for row, values in enumerate(maps[title]):
            picture = axes[row, col].imshow(
                values, cmap="magma", vmin=0, vmax=vmax, interpolation="nearest"
            )
    if row_labels is not None:
        for row, label in enumerate(row_labels):
            axes[row, 0].set_ylabel(label, fontsize=8)
    # Below the grid: beside a single column it would squeeze the maps.
    figure.colorbar(
        picture, ax=axes, location="bottom", shrink=0.9, aspect=25, label="|output - ground truth|"
    )
    return figure


def plot_frame_psnr(
    psnr: Mapping[str, Sequence[float]],
    is_input: Sequence[bool],
    times: Sequence[float] | None = None,
    ylabel: str = "Y-PSNR (dB)",
):
    """Per-frame PSNR, one line per model; synthesised frames shaded, input frames as filled markers.

    Args:
        psnr: model name -> one value per output frame.
        is_input: per output frame, True where it is an input time (space SR only), False where synthesised.
        times: x positions (e.g. time in input-frame units); default 0, 1, 2, ...

    Returns:
        the matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    is_input = np.asarray(is_input, dtype=bool)
    x = np.arange(len(is_input), dtype=float) if times is None else np.asarray(times, dtype=float)
    if len(x) != len(is_input) or any(len(values) != len(is_input) for values in psnr.values()):
        raise ValueError("plot_frame_psnr: every series needs one value per frame")
    figure, axis = plt.subplots(figsize=(8.0, 3.2), constrained_layout=True)
    half = 0.5 * (np.min(np.diff(x)) if len(x) > 1 else 1.0)
    for position in x[~is_input]:
        axis.axvspan(position - half, position + half, color="0.9", zorder=0)
    for name, values in psnr.items():
        values = np.asarray(values, dtype=float)
        (line,) = axis.plot(x, values, "-", label=name, zorder=2)
        axis.plot(x[is_input], values[is_input], "s", color=line.get_color(), zorder=3)
        axis.plot(
            x[~is_input],
            values[~is_input],
            "o",
            markerfacecolor="white",
            color=line.get_color(),
            zorder=3,
        )
    # Legend entries for the marker meaning, independent of the model colours.
    axis.plot([], [], "s", color="0.3", label="input time (space SR)")
    axis.plot([], [], "o", markerfacecolor="white", color="0.3", label="synthesised (shaded)")
    axis.set_xticks(x)
    axis.set_xlabel("frame" if times is None else "time (input frames)")
    axis.set_ylabel(ylabel)
    axis.grid(True, axis="y", alpha=0.4)
    axis.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # off the curves
    return figure


def frame_table(
    columns: Mapping[str, Sequence[float]],
    is_input: Sequence[bool],
    times: Sequence[float] | None = None,
    precision: int = 2,
) -> str:
    """A plain-text per-frame table: frame, time, kind (input / synthesised), then one column per entry.

    Returns:
        the lines joined with newlines; the last rows average every column over all frames, the
        input frames and the synthesised frames.
    """
    names = list(columns)
    num_frames = len(is_input)
    if any(len(columns[name]) != num_frames for name in names):
        raise ValueError("frame_table: every column needs one value per frame")
    if times is not None and len(times) != num_frames:
        raise ValueError("frame_table: one time per frame needed")
    widths = [max(len(name), precision + 5) for name in names]
    header = f"{'frame':>5}  {'time':>5}  {'kind':<11}" + "".join(
        f"  {name:>{width}}" for name, width in zip(names, widths, strict=True)
    )
    lines = [header, "-" * len(header)]
    for index in range(num_frames):
        time = f"{times[index]:.3g}" if times is not None else ""
        kind = "input" if is_input[index] else "synthesised"
        cells = "".join(
            f"  {float(columns[name][index]):>{width}.{precision}f}"
            for name, width in zip(names, widths, strict=True)
        )
        lines.append(f"{index:>5}  {time:>5}  {kind:<11}{cells}")
    is_input = np.asarray(is_input, dtype=bool)
    lines.append("-" * len(header))
    for label, selected in (
        ("mean", np.ones_like(is_input)),
        ("mean of inputs", is_input),
        ("mean of synthesised", ~is_input),
    ):
        if not selected.any():
            continue
        means = "".join(
            f"  {float(np.asarray(columns[name], dtype=float)[selected].mean()):>{width}.{precision}f}"
            for name, width in zip(names, widths, strict=True)
        )
        lines.append(f"{label:<25}{means}")
    return "\n".join(lines)
