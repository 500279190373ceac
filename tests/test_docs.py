"""The README's layout table and docs/architecture.md stay true to the tree.

Every module with code is listed in the README's "Layout" section (a package ``__init__.py``
holding only its docstring needs no row), every path listed there exists, and the architecture
page names every top-level part and keeps its diagrams.
"""

from __future__ import annotations

import ast
import re

from tests.support.paths import REPO

PACKAGES = ("contracts", "charts", "service", "ami", "infra", "ops")
ENTRY_POINTS = ("app.py", "fabfile.py")
PATH = re.compile(r"^([\w/.]+\.py)\s", re.MULTILINE)


def modules() -> set[str]:
    found = set(ENTRY_POINTS)
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            tree = ast.parse(path.read_text())
            code = [n for n in tree.body if not isinstance(n, ast.Expr)]
            if path.name == "__init__.py" and not code:
                continue
            found.add(str(path.relative_to(REPO)))
    return found


def layout_section() -> str:
    text = (REPO / "README.md").read_text()
    start = text.index("\n## Layout\n")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def listed() -> set[str]:
    return set(PATH.findall(layout_section()))


def test_every_module_is_in_the_readme_layout():
    missing = sorted(modules() - listed())
    assert not missing, f"add to README.md's Layout section: {', '.join(missing)}"


def test_every_path_in_the_layout_exists():
    stale = sorted(path for path in listed() if not (REPO / path).is_file())
    assert not stale, f"README.md's Layout lists files that do not exist: {', '.join(stale)}"


def test_the_layout_check_sees_modules():
    assert {"contracts/profile.py", "service/kernels/stages.py", "app.py"} <= modules()
    assert "ami/__init__.py" not in modules()  # a docstring only


def test_the_architecture_page_names_every_part_and_draws_them():
    page = (REPO / "docs/architecture.md").read_text()
    for part in (*PACKAGES, "service/kernels", "service/runtime", "service/telemetry", "runbooks"):
        assert part in page, part
    assert page.count("```mermaid") >= 3
    assert "lint-imports" in page and "tests/test_layers.py" in page
