"""Command-line entry points: `stno-train`, `stno-eval`, `stno-infer`."""
