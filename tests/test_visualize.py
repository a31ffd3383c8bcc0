"""Plotting helpers: shapes, exact values (error map, crops, nearest upscaling, detail box), figures."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no display in tests

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from stno.evaluation.visualize import (  # noqa: E402
    crop,
    detail_box,
    error_map,
    frame_table,
    plot_frame_psnr,
    show_error_maps,
    show_frame_grid,
    to_display,
    upscale_nearest,
)


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_error_map_is_absolute_difference_exactly():
    generator = torch.Generator().manual_seed(0)
    a = torch.rand(3, 7, 5, generator=generator)
    b = torch.rand(3, 7, 5, generator=generator)
    errors = error_map(a, b)
    assert errors.shape == (3, 7, 5) and errors.dtype == np.float64
    expected = np.abs(a.double().numpy() - b.double().numpy())
    assert np.array_equal(errors, expected)
    assert np.array_equal(error_map(b, a), errors)
    assert np.array_equal(error_map(a.numpy()[0], a.numpy()[0]), np.zeros((7, 5)))
    with pytest.raises(ValueError, match="shapes differ"):
        error_map(a, b[:, :6])


def test_to_display_layout_and_clipping():
    image = torch.linspace(-0.5, 1.5, 3 * 4 * 6).reshape(3, 4, 6)
    shown = to_display(image)
    assert shown.shape == (4, 6, 3)
    assert shown.min() == 0.0 and shown.max() == 1.0
    # channel c of pixel (y, x) is image[c, y, x] (channel 1 lies inside [0, 1])
    assert 0 < float(image[1, 1, 2]) < 1
    assert shown[1, 2, 1] == pytest.approx(float(image[1, 1, 2]))
    assert to_display(np.full((4, 6), 0.25)).shape == (4, 6)
    with pytest.raises(ValueError, match="expected"):
        to_display(np.zeros((4, 6, 3)))


def test_upscale_nearest_repeats_pixels():
    lr = np.arange(2 * 3, dtype=float).reshape(2, 3)
    up = upscale_nearest(lr, (8, 12))
    assert up.shape == (8, 12)
    assert np.array_equal(up, np.kron(lr, np.ones((4, 4))))
    rgb = torch.rand(3, 5, 7)
    up_rgb = upscale_nearest(rgb, (10, 21))
    assert up_rgb.shape == (3, 10, 21)
    assert np.array_equal(up_rgb[:, ::2, ::3], rgb.double().numpy())


def test_crop_and_detail_box():
    image = np.zeros((3, 40, 50))
    # a checkerboard patch (all the texture) at rows 21..28, columns 13..20
    image[:, 21:29, 13:21] = (np.indices((8, 8)).sum(0) % 2)[None]
    top, left, height, width = detail_box(image, 8)
    assert (height, width) == (8, 8)
    assert (top, left) == (21, 13)
    assert crop(image, (top, left, height, width)).shape == (3, 8, 8)
    assert np.array_equal(crop(image, (21, 13, 8, 8)), image[:, 21:29, 13:21])
    assert detail_box(torch.from_numpy(image[0]), (5, 9))[2:] == (5, 9)
    with pytest.raises(ValueError, match="outside"):
        crop(image, (35, 0, 8, 8))
    with pytest.raises(ValueError, match="does not fit"):
        detail_box(image, 41)


def test_frame_grid_shape_and_missing_panels():
    frames = [torch.rand(3, 12, 20) for _ in range(3)]
    figure = show_frame_grid(
        {"input": [frames[0], None, frames[2]], "output": frames, "ground truth": frames},
        row_labels=["t=0", "t=0.5", "t=1"],
        box=(2, 3, 4, 5),
    )
    axes = figure.axes
    assert len(axes) == 9
    assert [axis.get_title() for axis in axes[:3]] == ["input", "output", "ground truth"]
    assert sum(len(axis.images) for axis in axes) == 8  # one missing input panel
    assert sum(len(axis.patches) for axis in axes) == 8  # the box on every image
    with pytest.raises(ValueError, match="same number"):
        show_frame_grid({"a": frames, "b": frames[:2]})


def test_error_maps_figure_shared_scale():
    maps = [np.full((3, 6, 8), 0.1), np.full((6, 8), 0.3)]
    figure = show_error_maps({"model": maps}, row_labels=["a", "b"], vmax=0.5)
    images = [image for axis in figure.axes for image in axis.images]
    assert len(images) == 2
    assert all(image.get_clim() == (0, 0.5) for image in images)
    assert images[0].get_array().shape == (6, 8)  # colour averaged for display


def test_psnr_plot_marks_inputs_and_synthesised():
    is_input = [True, False, True, False, True]
    figure = plot_frame_psnr(
        {"bicubic_blend": [30, 25, 31, 26, 30], "stno": [32, 29, 33, 30, 32]},
        is_input,
        times=[0, 0.5, 1, 1.5, 2],
    )
    axis = figure.axes[0]
    assert len(axis.patches) == 2  # one shaded band per synthesised frame
    labels = axis.get_legend_handles_labels()[1]
    assert labels == ["bicubic_blend", "stno", "input time (space SR)", "synthesised (shaded)"]
    # filled squares at the input frames of the first model
    squares = [line for line in axis.lines if line.get_marker() == "s" and len(line.get_xdata())]
    assert list(squares[0].get_xdata()) == [0, 1, 2]
    assert list(squares[0].get_ydata()) == [30, 31, 30]
    with pytest.raises(ValueError, match="one value per frame"):
        plot_frame_psnr({"x": [1, 2]}, is_input)


def test_frame_table_rows_and_means():
    text = frame_table({"Y-PSNR": [30.0, 25.0, 31.0]}, [True, False, True], times=[0, 0.5, 1])
    lines = text.splitlines()
    assert len(lines) == 2 + 3 + 1 + 3
    assert lines[3].split() == ["1", "0.5", "synthesised", "25.00"]
    assert lines[-3].split() == ["mean", f"{(30 + 25 + 31) / 3:.2f}"]
    assert lines[-2].split()[-1] == "30.50"
    assert lines[-1].split()[-1] == "25.00"
