"""Every unprivileged example of docs/api.md and README.md runs, as written, and succeeds
(the root examples: compat/test_docs.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from docexamples import examples

EXAMPLE_TIMEOUT = 60.0
EXAMPLES = examples(root=False)


def test_the_docs_have_examples_of_each_part_of_the_api() -> None:
    code = "\n".join(block for _, block in EXAMPLES)
    for name in ("wgpy.Device.in_memory", "wgpy.Tunnel", "Interface(", "uapi.Client"):
        assert name in code, f"no example uses {name}"


@pytest.mark.parametrize("code", [c for _, c in EXAMPLES], ids=[i for i, _ in EXAMPLES])
def test_example_runs(code: str, tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                            text=True, timeout=EXAMPLE_TIMEOUT)
    assert result.returncode == 0, result.stderr[-3000:]
