"""The results pages, made from the benches' stamped JSON, never typed (``make results``).

Every bench script writes its figures with :func:`stamp.write` as ``{"bench", "stamp", "figures"}``
(under ``bench/out/`` by default). This script

1. collects the newest stamped file of each bench from ``--collect`` folders (default ``bench/out``)
   into ``bench/results/BENCH.json``, the results the repository keeps;
2. renders every ``bench/results/*.json`` into ``docs/results/BENCH.md`` and ``docs/results/index.md``;
3. rewrites the README's headline table, between ``<!-- results:begin -->`` and
   ``<!-- results:end -->``, from the same files.

    python bench/results.py                    # collect bench/out, render
    python bench/results.py --no-collect       # render the kept results only
    python bench/results.py --check            # exit 1 if a page or the README is not what it renders to
"""

import argparse
import json
import pathlib
import shutil
import sys

__all__ = ["load_results", "render_page", "render_index", "headline_rows", "render_headline", "main"]

ROOT = pathlib.Path(__file__).resolve().parents[1]
KEPT = ROOT / "bench" / "results"
PAGES = ROOT / "docs" / "results"
README = ROOT / "README.md"
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"

TITLES = {
    "rtl": "RTL cycles against the bound",
    "train": "Training speed and accuracy",
    "quantize": "Accuracy against weight bits",
    "boards": "Bitstream resources and fmax per board",
    "link": "Link throughput",
    "activity": "Activity: synaptic operations and sparsity",
    "autoencoder": "The autoencoder, Keras to RTL",
    "nir": "NIR round trip",
}


SCRIPTS = {"nir": "nir_roundtrip"}   # a bench whose script has another name


class ResultError(ValueError):
    """A results file that is not a stamped bench result."""


def load_results(folder=KEPT):
    """The stamped results of ``folder``, by bench name (each checked: bench, stamp with commit, figures)."""
    results = {}
    for path in sorted(pathlib.Path(folder).glob("*.json")):
        result = _load(path)
        if result is None:
            raise ResultError(f"{path}: not a stamped bench result (bench, stamp, figures)")
        results[result["bench"]] = result
    return results


def _load(path):
    try:
        result = json.loads(pathlib.Path(path).read_text())
    except (OSError, ValueError):
        return None
    if not (isinstance(result, dict) and {"bench", "stamp", "figures"} <= result.keys()):
        return None
    if not isinstance(result["stamp"], dict) or not result["stamp"].get("commit"):
        return None
    return result


def collect(folders, kept=KEPT):
    """Copy the newest stamped result of each bench found under ``folders`` into ``kept``; their names."""
    newest = {}
    for folder in folders:
        for path in sorted(pathlib.Path(folder).rglob("*.json")):
            result = _load(path)
            if result is not None and result["stamp"]["date"] >= newest.get(result["bench"], ("", None))[0]:
                newest[result["bench"]] = (result["stamp"]["date"], path)
    kept.mkdir(parents=True, exist_ok=True)
    for bench, (_, path) in sorted(newest.items()):
        shutil.copyfile(path, kept / f"{bench}.json")
    return sorted(newest)


# -- rendering ---------------------------------------------------------------------------------------

def _number(value):
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:,.4f}".rstrip("0").rstrip(".") if abs(value) < 100 else f"{value:,.1f}"
    return str(value)


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_number(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _stamp_lines(result):
    stamp = result["stamp"]
    machine = stamp.get("machine", {})
    dirty = " (with uncommitted changes)" if stamp.get("dirty") else ""
    return [f"- commit: `{stamp['commit']}`{dirty}",
            f"- date: {stamp['date']}",
            f"- machine: {machine.get('cores', '?')} cores, {machine.get('cpu', '?')}, Python {machine.get('python', '?')}",
            f"- command: `{stamp['command']}`"]


def _rtl_body(figures):
    rows = figures["rows"]
    clock = [key for key in rows[0] if key.startswith("images_per_s_at_") and key.endswith("MHz")
             and key != "images_per_s_at_50MHz"]
    lines = [f"Network `{figures['network']}` (sha256 `{figures['sha256'][:16]}...`). The cycle model runs over "
             f"all {rows[0]['test_set_images']:,} test images; the RTL (Verilator) runs "
             f"{rows[0]['images_simulated']} per lane count and must equal it.", "",
             _table(["lanes P", "cycles / inference (mean)", "max", "bound (mean)", "ratio",
                     "images/s at 50 MHz"] + [key[len("images_per_s_at_"):] .replace("MHz", " MHz") for key in clock]
                    + ["RTL equal", "RTL ratio (simulated images)"],
                    [[r["lanes"], round(r["cycles_mean"]), r["cycles_max"], round(r["bound_mean"]), r["ratio"],
                      r["images_per_s_at_50MHz"]] + [r[key] for key in clock] + [r["rtl_equal"], r["rtl_ratio"]]
                     for r in rows])]
    speed = figures.get("simulators")
    if speed:
        lines += ["", f"Simulator speed, {speed['speed_images']} images at {speed['lanes']} lanes:", "",
                  _table(["simulator", "wall s", "cycles/s", "equal"],
                         [[name, speed[name]["wall_s"], speed[name]["cycles_per_s"], speed[name]["equal"]]
                          for name in ("icarus", "verilator")]),
                  "", f"Verilator is {speed['verilator_over_icarus']}x faster than Icarus on this core."]
    return lines


def _generic_body(figures):
    rows = figures.get("rows") if isinstance(figures, dict) else figures
    if isinstance(rows, list) and rows and all(isinstance(row, dict) for row in rows):
        keys = [key for key in rows[0] if not isinstance(rows[0][key], (dict, list))]
        return [_table(keys, [[row.get(key, "") for key in keys] for row in rows])]
    return ["```json", json.dumps(figures, indent=1), "```"]


BODIES = {"rtl": _rtl_body}


def render_page(result):
    """The markdown page of one result."""
    bench = result["bench"]
    lines = [f"# {TITLES.get(bench, bench)}", "",
             f"Made by `bench/results.py` from `bench/results/{bench}.json`, written by `{_script(bench)}`. "
             "Do not edit: rerun the bench and `make results`.", ""]
    lines += _stamp_lines(result) + [""]
    lines += BODIES.get(bench, _generic_body)(result["figures"])
    return "\n".join(lines) + "\n"


def _kept_rows(results, bench):
    """``(row, short commit)`` for each row of ``bench``'s kept figures (none if it has no result)."""
    result = results.get(bench)
    if result:
        for row in result["figures"]:
            yield row, result["stamp"]["commit"][:7]


def _script(bench):
    return f"bench/{SCRIPTS.get(bench, bench)}.py"


def headline_rows(results):
    """(figure, value, bench, commit) rows of the headline table."""
    rows = []
    rtl = results.get("rtl")
    if rtl:
        figures, commit = rtl["figures"], rtl["stamp"]["commit"][:7]
        for row in figures["rows"]:
            if row["lanes"] in (8, 32):
                rows.append((f"cycles per inference, {figures['network']}, {row['lanes']} lanes "
                             f"(mean over {row['test_set_images']:,} test images)",
                             f"{round(row['cycles_mean']):,} (x{row['ratio']} the bound)", "rtl", commit))
        best = max(figures["rows"], key=lambda row: row["lanes"])
        rows.append((f"inferences/s at 50 MHz, {best['lanes']} lanes, back to back",
                     f"{best['images_per_s_at_50MHz']:,.0f}", "rtl", commit))
        rows.append(("RTL equal to the reference model, spike for spike",
                     f"{sum(r['images_simulated'] for r in figures['rows'] if r['rtl_equal'])}/"
                     f"{sum(r['images_simulated'] for r in figures['rows'])} images", "rtl", commit))
        if figures.get("simulators"):
            rows.append(("Verilator against Icarus, wall time", f"{figures['simulators']['verilator_over_icarus']}x",
                         "rtl", commit))
    for row, commit in _kept_rows(results, "boards"):
        if row["network"] in ("fashion", "digits") and row["config"].split(":")[2] == "auto":
            rows.append((f"{row['network']} default on {row['board']}, {row['lanes']} lanes at "
                         f"{row['clock_mhz']:g} MHz (hone build's default)",
                         f"fmax {row['fmax_mhz']:.1f} MHz (timing {'met' if row['timing_met'] else 'NOT met'}), "
                         f"{row['luts']:,} LUTs, {row['bram']} block RAMs, "
                         f"{row['uart_per_s']:,.0f} inferences/s over the UART", "boards", commit))
    for row, commit in _kept_rows(results, "link"):
        if not row["faults"]:
            rows.append((f"simulated {row['board']} at {row['baud']:,} baud, clean line, {row['images']} images",
                         f"{row['images_per_s_board']:,.1f} images/s in board time "
                         f"({100 * row['line_rate_fraction']:.1f}% of the line rate), "
                         f"{row['retransmissions']} retransmissions", "link", commit))
    for row, commit in _kept_rows(results, "nir"):
        rows.append((f"NIR export of {pathlib.Path(row['network']).name}, run by an independent NIR evaluator",
                     f"{row['classes_equal']:,}/{row['images']:,} classes and every layer's spikes equal; "
                     f"round trip {'keeps' if row['round_trip_same_hash'] else 'CHANGES'} the hash", "nir", commit))
    return rows


def render_headline(results, link="docs/results"):
    rows = headline_rows(results)
    if not rows:
        return "No results kept yet: run a bench, then `make results`."
    commits = sorted({row[3] for row in rows})
    lines = ["| figure | value | from |", "|---|---|---|"]
    lines += [f"| {figure} | {value} | [`{_script(bench)}`]({link}/{bench}.md) |" for figure, value, bench, _ in rows]
    lines += ["", f"Made by `make results` from the stamped bench results of commit {', '.join(f'`{c}`' for c in commits)}."]
    return "\n".join(lines)


def render_index(results):
    lines = ["# Results", "",
             "Every figure on these pages was written by a bench script (`bench/*.py`), stamped with its "
             "commit, date, machine and command (`bench/stamp.py`), and turned into a page by "
             "`make results` (`bench/results.py`). None is typed by hand.", ""]
    if results:
        lines += ["| page | bench | commit | date |", "|---|---|---|---|"]
        lines += [f"| [{TITLES.get(name, name)}]({name}.md) | `{_script(name)}` | `{result['stamp']['commit'][:7]}` | "
                  f"{result['stamp']['date'][:10]} |" for name, result in sorted(results.items())]
        lines += ["", "## Headline", "", render_headline(results, link=".")]
    else:
        lines += ["No results kept yet."]
    lines += ["", "To add one: run a bench (`python bench/rtl.py`), then `make results`, which copies its stamped "
              "JSON from `bench/out/` to `bench/results/` and makes its page."]
    return "\n".join(lines) + "\n"


def readme_with_headline(text, results):
    if BEGIN not in text or END not in text:
        raise ResultError(f"README.md has no {BEGIN} ... {END} markers")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{render_headline(results)}\n{END}{tail}"


def rendered(results):
    """{path: text} of every file this script writes."""
    files = {PAGES / f"{name}.md": render_page(result) for name, result in results.items()}
    files[PAGES / "index.md"] = render_index(results)
    files[README] = readme_with_headline(README.read_text(), results)
    return files


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--collect", type=pathlib.Path, action="append",
                        help="folder of stamped bench JSON to collect from (default: bench/out)")
    parser.add_argument("--no-collect", action="store_true", help="render the kept results only")
    parser.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file is out of date")
    args = parser.parse_args(argv)
    if not (args.no_collect or args.check):
        folders = [folder for folder in (args.collect or [ROOT / "bench" / "out"]) if folder.exists()]
        for name in collect(folders):
            print(f"kept bench/results/{name}.json")
    try:
        files = rendered(load_results())
    except ResultError as error:
        print(f"results.py: error: {error}", file=sys.stderr)
        return 1
    stale = [path for path, text in files.items() if not path.exists() or path.read_text() != text]
    if args.check:
        for path in stale:
            print(f"out of date: {path.relative_to(ROOT)} (run make results)", file=sys.stderr)
        return 1 if stale else 0
    PAGES.mkdir(parents=True, exist_ok=True)
    for path in stale:
        path.write_text(files[path])
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
