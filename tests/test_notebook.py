"""docs/notebook.ipynb runs top to bottom in a real kernel, as a reader runs it, and is kept without outputs."""

from __future__ import annotations

import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

DOCS = Path(__file__).resolve().parent.parent / "docs"
NOTEBOOK = DOCS / "notebook.ipynb"
#: The notebook's budget on a 2-core machine; the kernel may take several times longer on a loaded one.
BUDGET_S = 60


def test_the_notebook_is_kept_without_outputs() -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code and all(not cell.outputs and cell.execution_count is None for cell in code)


def test_the_notebook_runs_top_to_bottom_and_shows_its_pictures() -> None:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(
        notebook, timeout=5 * BUDGET_S, kernel_name="python3", resources={"metadata": {"path": str(DOCS)}}
    )
    before = set(DOCS.iterdir())
    start = time.perf_counter()
    client.execute()  # a cell that raises fails the test with its traceback
    seconds = time.perf_counter() - start
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    pictures = [o for o in outputs if "image/png" in o.get("data", {}) or "image/jpeg" in o.get("data", {})]
    assert len(pictures) >= 5, len(pictures)  # coffee, its saved copy, the batch, the ViT, the comparison figure
    # `result` on its own line: the Explanation itself, as a picture (a library's warning may be printed before it)
    shown = [o for o in notebook.cells[3].outputs if o.output_type == "execute_result"]
    assert shown and "image/png" in shown[0].data and shown[0].data["text/plain"].startswith("<Explanation ")
    text = "".join(o.get("text", "") for o in outputs)
    assert "largest difference from one call each:" in text and "already exists" in text and "pointing" in text
    assert seconds < 5 * BUDGET_S
    assert set(DOCS.iterdir()) == before  # nothing left in docs/
