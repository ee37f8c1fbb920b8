"""README's "Layout" block names every module and folder of the tree, and nothing that is not there."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("jump_core", "pipeline")


def layout_block() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Layout\n") :]
    return section.split("```")[1]


def listed(block: str | None = None) -> dict[str, set[str]]:
    """Folder (e.g. 'jump_core/data') -> the module and sub-folder names the block lists under it."""
    out: dict[str, set[str]] = {}
    top = sub = None
    for line in (layout_block() if block is None else block).splitlines():
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        first = line.split()[0]
        if indent == 0:
            top, sub = first.rstrip("/"), None
            out.setdefault(top, set())
        elif indent == 2 and first.endswith("/"):
            sub = first.rstrip("/")
            out[top].add(first)
            out.setdefault(f"{top}/{sub}", set())
        elif indent == 2:
            sub = None
        folder = top if sub is None else f"{top}/{sub}"
        names = re.findall(r"(?<![\w./])([a-z0-9_]+\.py)\b", line)
        out[folder].update(n for n in names if top in PACKAGES)
    return out


def in_tree(package: str) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for d in [ROOT / package, *sorted(p for p in (ROOT / package).iterdir() if (p / "__init__.py").is_file())]:
        rel = str(d.relative_to(ROOT))
        out[rel] = {p.name for p in d.glob("*.py") if p.name != "__init__.py"}
        if d == ROOT / package:
            out[rel] |= {f"{p.name}/" for p in d.iterdir() if (p / "__init__.py").is_file()}
    return out


def mismatches(block: str | None = None) -> list[tuple[str, list[str]]]:
    got = listed(block)
    return [
        (folder, sorted(names ^ got.get(folder, set())))
        for package in PACKAGES
        for folder, names in in_tree(package).items()
        if got.get(folder) != names
    ]


def test_layout_lists_exactly_the_packages_modules():
    assert mismatches() == []


def test_layout_lists_the_top_level_folders():
    tops = {p.name for p in ROOT.iterdir() if p.is_dir() and not p.name.startswith(".")} - {"runs", "__pycache__"}
    tops = {t for t in tops if not t.endswith(".egg-info")}
    assert {folder for folder in listed() if "/" not in folder} == tops


def test_the_check_catches_a_missing_or_misplaced_module():
    block = layout_block()
    assert mismatches(block.replace("registry.py", "registri.py")) == [("jump_core", ["registri.py", "registry.py"])]
    moved = block.replace("report.py (Markdown + figures)", "").replace(
        "cli.py                the jump command (offline", "cli.py report.py     the jump command (offline"
    )
    assert ("jump_core/experiments", ["report.py"]) in mismatches(moved)
