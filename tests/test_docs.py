"""The documentation: the API reference names every public name and module, the kept bench results
parse and name a commit, the pages they make are up to date, and (slow) the strict build passes."""

import ast
import importlib.util
import json
import pathlib
import re
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
API = ROOT / "docs" / "api"
PACKAGES = ("network", "training", "rtl", "sim", "boards", "host", "cli")


def exports():
    """``hone._EXPORTS`` read from the source (name -> defining module), without importing hone."""
    tree = ast.parse((ROOT / "__init__.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "_EXPORTS" for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError("__init__.py defines no _EXPORTS")


def api_text():
    return "\n".join(path.read_text() for path in sorted(API.glob("*.md")))


def test_every_name_of_hone_all_is_in_the_api_reference():
    import hone

    text, names = api_text(), exports()
    assert sorted(names) == hone.__all__
    documented = set(re.findall(r"^::: (hone\.[\w.]+)$", text, re.M))
    for name, module in names.items():
        assert f"[hone.{module}.{name}]" in text, f"docs/api/index.md does not list hone.{name} ({module})"
        assert f"hone.{module}" in documented, f"no '::: hone.{module}' for hone.{name} in docs/api/"


def test_every_public_module_is_in_the_api_reference():
    documented = set(re.findall(r"^::: (hone\.[\w.]+)$", api_text(), re.M))
    modules = {f"hone.{package}.{path.stem}" for package in PACKAGES
               for path in (ROOT / package).glob("*.py") if not path.name.startswith("_")}
    assert modules - documented == set(), f"public modules missing from docs/api/: {sorted(modules - documented)}"


def load_results_script():
    spec = importlib.util.spec_from_file_location("bench_results", ROOT / "bench" / "results.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_kept_results_parse_and_name_a_commit():
    kept = sorted((ROOT / "bench" / "results").glob("*.json"))
    assert kept, "bench/results/ keeps no result"
    for path in kept:
        result = json.loads(path.read_text())
        assert {"bench", "stamp", "figures"} <= result.keys(), path
        assert re.fullmatch(r"[0-9a-f]{40}", result["stamp"]["commit"]), f"{path}: {result['stamp']['commit']!r}"
        assert result["stamp"]["machine"]["cores"] >= 1 and result["stamp"]["command"].startswith("python bench/")
        page = ROOT / "docs" / "results" / f"{result['bench']}.md"
        assert result["stamp"]["commit"] in page.read_text(), f"{page} does not name the commit of {path}"


def test_results_pages_and_readme_headline_are_what_the_script_makes():
    results = load_results_script()
    files = results.rendered(results.load_results())
    for path, text in files.items():
        assert path.read_text() == text, f"{path.relative_to(ROOT)} is out of date: run make results"


def test_readme_is_short_and_names_the_two_set_up_commands():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 250 and len(text.encode()) < 20_000
    assert re.findall(r"^make (\w+) ", text, re.M) == ["flow", "test"]
    assert "docs/index.md" in text


def test_no_file_mentions_an_issue_number_or_a_lost_notes_file():
    pattern = re.compile("iss" + r"ue [0-9]|" + "MEASURE" + r"MENTS\.md", re.I)
    tracked = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "*.md", "*.py"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.split()
    offenders = [name for name in tracked if (ROOT / name).is_file() and pattern.search((ROOT / name).read_text())]
    assert offenders == []


@pytest.mark.slow
def test_the_docs_build_strict(tmp_path):
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    api = (tmp_path / "site" / "api" / "index.html").read_text()
    for name, module in exports().items():
        assert f"hone.{module}.{name}" in api, name
    cli = (tmp_path / "site" / "reference" / "cli.html").read_text()
    assert "usage: hone train" in cli and "usage: hone nir export" in cli
