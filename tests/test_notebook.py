"""examples/exercise.ipynb: stored without outputs, and runs top to bottom on synthetic data.

The run test executes the notebook with nbclient in a fresh ``python3`` kernel (ipykernel, from
the ``notebook`` extra that the test command installs). It runs in fast mode
(``OPTREG_NOTEBOOK_FAST=1``: tiny sizes) without ``OPTREG_DATA_DIR``, so the notebook writes and
uses synthetic CIFAR-10. The kernel imports this checkout's optreg, because ``src`` leads its
``PYTHONPATH``. Everything it writes goes under the test's temporary folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "examples" / "exercise.ipynb"
SRC = ROOT / "src"
KERNEL = "python3"
CELL_TIMEOUT_S = 120  # in fast mode every cell takes seconds; this only stops a hang
PLOTS = 5  # the sample images, the baseline, L2 and AdamW curves, the seed study's curves


def code_cells(nb: Any) -> list[Any]:
    return [cell for cell in nb.cells if cell.cell_type == "code"]


def test_notebook_is_stored_without_outputs() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    dirty = [i for i, cell in enumerate(nb.cells) if cell.cell_type == "code" and (
        cell.outputs or cell.execution_count is not None or "execution" in cell.metadata)]
    assert not dirty, (
        f"cells {dirty} of {NOTEBOOK.name} hold outputs, execution counts or timings: clear "
        "them (Jupyter: Edit > Clear Outputs of All Cells, then save; or jupyter nbconvert "
        f"--clear-output --inplace {NOTEBOOK.relative_to(ROOT)})")
    assert nb.metadata.kernelspec.name == KERNEL


@pytest.mark.slow
def test_notebook_runs_on_synthetic_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    try:
        from jupyter_client.kernelspec import KernelSpecManager
        from nbclient import NotebookClient
    except ImportError as e:
        pytest.fail(f"{e.name} is missing: install the notebook extra (pip install -e "
                    "'.[notebook]'; the test command does)")
    if KERNEL not in KernelSpecManager().find_kernel_specs():
        pytest.fail(f"no {KERNEL!r} Jupyter kernel: install ipykernel into this environment "
                    "(pip install -e '.[notebook]')")

    # jupyter_client starts the kernel with this process's environment.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(
        [str(SRC), *filter(None, [os.environ.get("PYTHONPATH")])]))
    monkeypatch.setenv("OPTREG_NOTEBOOK_FAST", "1")
    monkeypatch.delenv("OPTREG_DATA_DIR", raising=False)
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the notebook's temporary folder
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    monkeypatch.setenv("JUPYTER_RUNTIME_DIR", str(tmp_path / "runtime"))

    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = NotebookClient(nb, kernel_name=KERNEL, timeout=CELL_TIMEOUT_S,
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError, naming the cell, if any cell fails

    outputs = [out for cell in code_cells(nb) for out in cell.outputs]
    text = "".join(out.text for out in outputs if out.output_type == "stream")
    rich = [out.data for out in outputs if out.output_type in ("display_data", "execute_result")]
    assert "using SYNTHETIC data" in text
    assert f"({SRC / 'optreg' / '__init__.py'})" in text  # this checkout's optreg
    assert text.count(" steps = 0.0\n") == 3  # optreg's three Adams equal torch's, bit for bit
    assert sum("image/png" in data for data in rich) == PLOTS
    tables = [data["text/html"] for data in rich if "text/html" in data]
    assert any(all(name in table for name in ("adam", "adam-l2", "adamw")) for table in tables)
