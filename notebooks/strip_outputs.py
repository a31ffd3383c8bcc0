"""Remove outputs and execution counts from notebooks before committing them.

    python notebooks/strip_outputs.py notebooks/*.ipynb

Keeps the repository small and diffs readable; `tests/test_notebooks.py` checks it was done.
"""

from __future__ import annotations

import sys

import nbformat


def strip_outputs(path: str) -> bool:
    """Clear every code cell's outputs and execution count in place; True if the file changed."""
    notebook = nbformat.read(path, as_version=4)
    changed = False
    for cell in notebook.cells:
        if cell.metadata.pop("execution", None) is not None:  # run timings added by nbclient
            changed = True
        if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None):
            cell.outputs, cell.execution_count, changed = [], None, True
    if changed:
        nbformat.write(notebook, path)
    return changed


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit("usage: python notebooks/strip_outputs.py NOTEBOOK.ipynb [...]")
    for notebook_path in sys.argv[1:]:
        print(f"{'stripped' if strip_outputs(notebook_path) else 'clean   '} {notebook_path}")
