"""The layout's promises, checked from outside: the network-file contract imports nothing
heavy, only the command line knows argparse, the layering holds, and no private Amaranth name is used."""

import ast
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
PACKAGES = ("network", "training", "rtl", "sim", "boards", "host", "cli")
HEAVY = ("keras", "tensorflow", "jax", "amaranth", "cocotb", "serial", "torch")


def _modules(package):
    return sorted(path for path in (ROOT / package).rglob("*.py"))


def _imports(path):
    """Every module name ``path`` imports (top level or inside functions), absolute."""
    tree = ast.parse(path.read_text(), filename=str(path))
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


def test_every_package_folder_is_installed():
    """A folder of the tree that pyproject.toml does not list would be missing from the wheel."""
    import tomllib

    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    assert {f"hone.{package}" for package in PACKAGES} | {"hone"} == listed


def test_the_network_package_imports_nothing_heavy_in_a_fresh_interpreter():
    modules = [f"hone.network.{path.stem}" for path in _modules("network") if path.stem != "__init__"]
    assert "hone.network.netfile" in modules and "hone.network.nirgraph" in modules
    code = (f"import sys\nfor name in {modules!r}: __import__(name)\n"
            f"print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r})))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [], f"hone.network pulled in {result.stdout.strip()}"


@pytest.mark.parametrize("package", [p for p in PACKAGES if p != "cli"])
def test_only_the_command_line_imports_argparse(package):
    offenders = [str(path.relative_to(ROOT)) for path in _modules(package) if "argparse" in _imports(path)]
    assert offenders == []


@pytest.mark.parametrize("package", PACKAGES)
def test_no_private_amaranth_name_is_used(package):
    offenders = [f"{path.relative_to(ROOT)}: {name}" for path in _modules(package) for name in _imports(path)
                 if name.startswith("amaranth") and any(part.startswith("_") for part in name.split("."))]
    offenders += [str(path.relative_to(ROOT)) for path in _modules(package) if "amaranth.hdl._" in path.read_text()]
    assert offenders == []


@pytest.mark.parametrize("package", [p for p in PACKAGES if p != "cli"])
def test_no_library_module_knows_the_command_lines_errors(package):
    offenders = [str(path.relative_to(ROOT)) for path in _modules(package)
                 if any(word in path.read_text() for word in ("UserError", "UsageError"))]
    assert offenders == []


def test_import_linter_contracts_are_kept():
    lint = pathlib.Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint), "--no-cache"], capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "0 broken" in result.stdout and "5 kept" in result.stdout, result.stdout[-2000:]


def test_import_linter_refuses_a_back_arrow(tmp_path):
    """The contracts are not vacuous: a network module that imports the command line breaks the layers,
    the command line's own contract, and training's (which reaches the command line through it)."""
    import shutil

    tree = tmp_path / "hone"
    shutil.copytree(ROOT, tree, ignore=shutil.ignore_patterns(".venv", ".git", "runs", "tests", "bench", "docs",
                                                              "__pycache__", "*.egg-info", "build"))
    (tree / "network" / "netfile.py").write_text((tree / "network" / "netfile.py").read_text()
                                                 + "\nfrom hone.cli import arguments  # noqa\n")
    lint = pathlib.Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint), "--no-cache", str(tree / "pyproject.toml")], capture_output=True,
                            text=True, timeout=300, cwd=tmp_path, env={"PYTHONPATH": str(tmp_path), "PATH": ""})
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-2000:]
    assert "hone.network.netfile -> hone.cli.arguments" in result.stdout, result.stdout[-3000:]
    broken = [line for line in result.stdout.splitlines() if line.endswith("BROKEN")]
    assert broken == ["hardware layers: network <- rtl <- (sim | boards) <- host <- cli BROKEN",
                      "training builds on the network file only BROKEN",
                      "nothing imports the command line but python -m hone BROKEN"], result.stdout[-3000:]
