"""Board benchmark: bitstreams per board and lane count, with resources, fmax, cycles and build time.

Each configuration is a real ``hone build`` (Yosys, nextpnr and the packer from YoWASP). Printed per
configuration: LUTs, flip-flops, block RAM, post-route fmax, cycles per inference (cycle model over
the whole test set), compute inferences/s at the clock and at fmax, the UART-bound rate and the build
wall time, then a summary against the goals (>= 100,000 inferences/s for the default network on an
ECP5-85F, build <= 5 min).

    python bench/boards.py [--configs ulx3s-85f:fashion:auto:45,icebreaker:digits:max:12]

LANES ``auto`` is ``hone build``'s default (the fewest lanes that keep up with the line), ``max`` its
``--lanes max`` (the most that fit). Each board runs its own UART rate (``hone build``'s default).

One JSON line per configuration; a table and a plot go to bench/out/boards/.
"""

import argparse
import json
import os
import pathlib
import time

import stamp

ROOT = pathlib.Path(__file__).resolve().parent.parent

from hone.boards.build import build_bitstream

NETWORKS = {"fashion": ROOT / "tests/data/fashion-dense-4bit.hone",
            "fashion-conv": ROOT / "tests/data/fashion-conv-4bit.hone",
            "digits": ROOT / "tests/data/digits-dense-4bit.hone"}
DEFAULT = ("icebreaker:digits:auto:12,ulx3s-85f:fashion:auto:45,ulx3s-85f:digits:16:50,ulx3s-85f:fashion:32:40,"
           "ulx3s-85f:fashion:64:40,ulx3s-85f:fashion-conv:32:40")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default=DEFAULT,
                        help="comma-separated BOARD:NETWORK:LANES|auto|max:MHZ (NETWORK: fashion, fashion-conv, "
                             "digits or a path)")
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "bench/out/boards")
    args = parser.parse_args()

    rows = []
    for config in args.configs.split(","):
        board, network, lanes, mhz = config.split(":")
        path = NETWORKS.get(network, pathlib.Path(network))
        started = time.monotonic()
        report = build_bitstream(path, board=board, output=args.out / config.replace(":", "-"),
                                 lanes={"auto": None, "max": "max"}.get(lanes, lanes if lanes in ("auto", "max") else int(lanes)), clock_mhz=float(mhz),
                                 progress=False, log=lambda *_: None).to_json()
        wall = time.monotonic() - started
        res, inference = report["resources"], report["inference"]
        row = {
            "config": config, "board": board, "network": network, "lanes": report["lanes"],
            "clock_mhz": report["clock_hz"] / 1e6, "fmax_mhz": round(report["fmax_hz"] / 1e6, 2),
            "timing_met": report["timing_met"], "router": report["router"],
            "luts": res["logic"]["used"], "luts_available": res["logic"]["available"],
            "ffs": res["ff"]["used"], "bram": res["bram"]["used"], "bram_available": res["bram"]["available"],
            "bram_estimate": report["fit_estimate"]["bram_blocks"], "luts_estimate": report["fit_estimate"]["luts_estimate"],
            "cycles_per_inference": round(inference["cycles_per_inference"], 1),
            "compute_per_s": round(inference["compute_inferences_per_s"]),
            "compute_per_s_at_fmax": round(inference["compute_inferences_per_s_at_fmax"]),
            "uart_per_s": round(inference["uart_inferences_per_s"], 1),
            "build_s": round(wall, 1), "tool_s": report["seconds"],
            "builds": len(report["attempts"]), "cpus": os.cpu_count(),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    header = (f"{'board':<11}{'net':<8}{'lanes':>6}{'clock':>7}{'fmax':>7}{'LUT':>8}{'FF':>7}{'BRAM':>9}"
              f"{'cycles':>9}{'inf/s':>9}{'@fmax':>9}{'UART':>7}{'build s':>9}")
    lines = [header]
    for r in rows:
        lines.append(f"{r['board']:<11}{r['network']:<8}{r['lanes']:>6}{r['clock_mhz']:>7g}{r['fmax_mhz']:>7.1f}"
                     f"{r['luts']:>8}{r['ffs']:>7}{r['bram']:>5}/{r['bram_available']:<3}"
                     f"{r['cycles_per_inference']:>9.0f}{r['compute_per_s']:>9}{r['compute_per_s_at_fmax']:>9}"
                     f"{r['uart_per_s']:>7.0f}{r['build_s']:>9.0f}")
    fashion85 = [r for r in rows if r["board"] == "ulx3s-85f" and r["network"] == "fashion"]
    if fashion85:
        best = max(fashion85, key=lambda r: r["compute_per_s"] if r["timing_met"] else 0)
        lines.append(f"default network on ECP5-85F: best {best['compute_per_s']:,} inferences/s at "
                     f"{best['clock_mhz']:g} MHz ({best['compute_per_s_at_fmax']:,} at fmax) with {best['lanes']} "
                     f"lanes: {best['compute_per_s'] / 100_000:.2f}x the 100,000/s goal")
    slowest = max(rows, key=lambda r: r["build_s"])
    lines.append(f"slowest build {slowest['build_s']:.0f} s ({slowest['config']}) on {os.cpu_count()} CPUs; goal <= 300 s")
    table = "\n".join(lines)
    print(table)
    (args.out / "boards.txt").write_text(table + "\n")
    stamp.write(args.out / "boards.json", rows, bench="boards")
    plot(rows, args.out / "boards.png")


def plot(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['board']}\n{r['network']} P={r['lanes']}" for r in rows]
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4))
    x = range(len(rows))
    left.bar([i - 0.2 for i in x], [r["compute_per_s"] for r in rows], width=0.4, label="at the clock")
    left.bar([i + 0.2 for i in x], [r["compute_per_s_at_fmax"] for r in rows], width=0.4, label="at fmax")
    left.axhline(100_000, color="k", linestyle="--", linewidth=1, label="goal (default net, 85F)")
    left.set_yscale("log")
    left.set_ylabel("inferences / s (compute)")
    left.set_xticks(list(x), labels, fontsize=7)
    left.legend(fontsize=8)
    right.bar(x, [r["build_s"] for r in rows], color="tab:gray")
    right.axhline(300, color="k", linestyle="--", linewidth=1)
    right.set_ylabel("build wall time, s")
    right.set_xticks(list(x), labels, fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


if __name__ == "__main__":
    main()
