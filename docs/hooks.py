"""mkdocs hooks of hone's documentation (configured in mkdocs.yml, ``hooks:``).

- The API reference is read by griffe without importing anything. griffe finds a package by its
  folder's name, and hone's folder is the repository root (``package-dir = {"hone" = "."}``), so
  :func:`on_startup` lays out ``build/api/hone/`` with links to exactly the folders that install as
  ``hone`` (pyproject's ``packages``) and no others (not ``.venv``, ``tests`` or ``runs``).
- The CLI reference, ``reference/cli.md``, is made at build time from the argparse parsers
  (:func:`hone.cli.main.build_parser`), so it cannot drift from the command.
"""

import argparse
import os
import pathlib
import shutil
import tomllib

from mkdocs.structure.files import File

ROOT = pathlib.Path(__file__).resolve().parents[1]
API_ROOT = ROOT / "build" / "api"
CLI_PAGE = "reference/cli.md"


def _package_folders():
    """The sub-packages pyproject installs under ``hone`` (``hone.network`` -> ``network``)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return [name.split(".", 1)[1] for name in project["tool"]["setuptools"]["packages"] if "." in name]


def _lay_out_api_sources():
    package = API_ROOT / "hone"
    if package.is_symlink() or package.is_file():
        package.unlink()
    elif package.exists():
        shutil.rmtree(package)
    package.mkdir(parents=True)
    (package / "__init__.py").symlink_to(ROOT / "__init__.py")
    for folder in _package_folders():
        (package / folder).symlink_to(ROOT / folder, target_is_directory=True)


def on_startup(command, dirty):
    # before any plugin's on_config: mkdocstrings' handler scans its paths when it is made
    _lay_out_api_sources()


def _subcommands(parser, prefix=()):
    """(words, help, parser) for every subcommand under ``parser``, depth first, in --help's order."""
    for action in parser._actions:  # argparse keeps its subparsers only here
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            for name, sub in action.choices.items():
                words = (*prefix, name)
                yield words, helps.get(name, ""), sub
                yield from _subcommands(sub, words)


def cli_reference():
    """The markdown of the CLI reference: ``hone --help`` and each subcommand's ``--help``."""
    columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"      # argparse wraps to the terminal: fix it, so the page is stable
    try:
        from hone.cli.main import build_parser   # imported here: the command's modules load only now

        parser = build_parser()
        lines = ["# CLI reference", "",
                 "Made from the `hone` command's own parsers each time the docs are built, so it is "
                 "exactly what `hone COMMAND --help` prints. Every failure is one `hone: error: ...` "
                 "line on stderr, exit status 2 for a usage error and 1 for a failed run "
                 "([troubleshooting](../troubleshooting.md)).", "",
                 "| command | what |", "|---|---|"]
        commands = list(_subcommands(parser))
        for words, summary, sub in commands:
            title, anchor = " ".join(("hone", *words)), "-".join(("hone", *words))
            lines.append(f"| [`{title}`](#{anchor}) | {' '.join(summary.split()).replace('|', '/')} |")
        lines += ["", "## `hone`", "", "```text", parser.format_help().rstrip(), "```", ""]
        for words, _, sub in commands:
            title, anchor = " ".join(("hone", *words)), "-".join(("hone", *words))
            lines += [f"## `{title}` {{#{anchor}}}", "", "```text", sub.format_help().rstrip(), "```", ""]
        return "\n".join(lines)
    finally:
        if columns is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = columns


def on_files(files, config):
    files.append(File.generated(config, CLI_PAGE, content=cli_reference()))
    return files
