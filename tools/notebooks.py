"""Shared by tools/make_example_NN.py: write a list of cells as an example notebook."""

from pathlib import Path

import nbformat as nbf

md = nbf.v4.new_markdown_cell
code = nbf.v4.new_code_cell


def write_example(cells: list, name: str) -> Path:
    for i, cell in enumerate(cells):
        cell.id = f"cell-{i:02d}"  # stable ids: regenerating a notebook changes only what changed
    nb = nbf.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    out = Path(__file__).resolve().parent.parent / "examples" / name
    nbf.write(nb, out)
    print(f"wrote {out}")
    return out
