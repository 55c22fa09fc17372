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
    for name in ("wgpy.Device.in_memory", "wgpy.Tunnel", "wgpy.Network", "Interface(",
                 "uapi.Client"):
        assert name in code, f"no example uses {name}"


@pytest.mark.parametrize("code", [c for _, c in EXAMPLES], ids=[i for i, _ in EXAMPLES])
def test_example_runs(code: str, tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True,
                            text=True, timeout=EXAMPLE_TIMEOUT)
    assert result.returncode == 0, result.stderr[-3000:]


ROOT = Path(__file__).resolve().parent.parent


def layout_block(readme: str) -> list[str]:
    """The lines of the README's module map (the code block under "## Layout")."""
    section = readme.split("\n## Layout\n", 1)[1]
    return section.split("```\n", 2)[1].splitlines()


def map_entries(lines: list[str]) -> dict[str, str]:
    """Each path the map names at the start of a line (or beside another), with the text
    that describes it, continuation lines included."""
    import re  # noqa: PLC0415

    entries: dict[str, str] = {}
    current = None
    for line in lines:
        if line[:1] not in (" ", ""):
            for path, text in re.findall(r"(\S+)\s+(.*?)(?=\s{2,}\S+/|\s{2,}\S+\.py|$)", line):
                entries[path] = text
                current = path
        elif current is not None:
            entries[current] += " " + line.strip()
    return entries


def test_the_readme_module_map_matches_the_tree() -> None:
    """Every path the map names exists; every module of wgpy's top level and every package
    is in it, and each package's description names each of its modules."""
    import re  # noqa: PLC0415

    entries = map_entries(layout_block((ROOT / "README.md").read_text()))
    for path in entries:
        assert (ROOT / path).exists(), f"the README's map names {path}, which is not there"
    modules = {f"wgpy/{p.name}" for p in (ROOT / "wgpy").glob("*.py")
               if p.name not in ("__init__.py", "__main__.py")}
    assert modules - set(entries) == set(), "modules missing from the README's map"
    packages = sorted(p for p in (ROOT / "wgpy").iterdir() if (p / "__init__.py").exists())
    assert len(packages) >= 6
    for package in packages:
        key = f"wgpy/{package.name}/"
        assert key in entries, f"{key} missing from the README's map"
        named = set(re.findall(r"\w+", entries[key]))
        for module in package.glob("*.py"):
            if module.stem != "__init__" and f"{key}{module.name}" not in entries:
                assert module.stem in named, f"{key}{module.name} not described in the map"
