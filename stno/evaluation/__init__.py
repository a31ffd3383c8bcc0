"""Benchmark evaluation: protocols (windows), sources, the evaluation loop and the reports."""

from .benchmarks import BENCHMARKS, Protocol, make_protocol, open_source
from .evaluator import EvaluationResult, FrameScore, evaluate, side_by_side
from .protocols import Window, gopro_windows, timestamps, vid4_windows, vimeo_windows
from .report import (
    AVERAGE_DEFINITION,
    METRIC_NAMES,
    aggregate,
    markdown_table,
    metrics_document,
    write_reports,
)

__all__ = [
    "AVERAGE_DEFINITION",
    "BENCHMARKS",
    "METRIC_NAMES",
    "EvaluationResult",
    "FrameScore",
    "Protocol",
    "Window",
    "aggregate",
    "evaluate",
    "gopro_windows",
    "make_protocol",
    "markdown_table",
    "metrics_document",
    "open_source",
    "side_by_side",
    "timestamps",
    "vid4_windows",
    "vimeo_windows",
    "write_reports",
]
