"""RTL benchmark: cycles per inference against the bound for several lane counts, and simulator speed.

For each P, ``--images`` test images go through the RTL on Verilator (cycles read from the core,
checked equal to the cycle model); the cycle model then gives the figures over the whole test set.
Last, the same images run on Icarus and on Verilator, to compare their wall-time speed.

    python bench/rtl.py [--network tests/data/fashion-dense-4bit.hone] [--lanes 1,8,32] [--images 20]

One JSON line per lane count and one for the simulators; a plot goes to bench/out/rtl/cycles.png.
"""

import argparse
import json
import pathlib

import numpy as np

import stamp

ROOT = pathlib.Path(__file__).resolve().parents[1]

from hone.rtl.cycles import RESULT_GAP, cycle_bound, inference_cycles
from hone.rtl.plan import CorePlan
from hone.sim.runner import CLOCK_HZ, simulate
from hone.network.datasets import load_dataset
from hone.network.integer import IntegerNetwork
from hone.network.netfile import read_network


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--network", type=pathlib.Path, default=ROOT / "tests/data/fashion-dense-4bit.hone")
    parser.add_argument("--lanes", default="1,8,32")
    parser.add_argument("--images", type=int, default=20, help="images simulated per lane count")
    parser.add_argument("--speed-images", type=int, default=10, help="images for the Icarus/Verilator race")
    parser.add_argument("--clock-mhz", type=float, default=40.0,
                        help="the build clock the board runs at, for inferences/s (default: 40, ULX3S)")
    parser.add_argument("--jobs", type=int, default=2, help="simulator processes (default: 2)")
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "bench/out/rtl")
    args = parser.parse_args()

    network, meta = read_network(args.network)
    data = load_dataset(meta.get("dataset", "fashion-mnist"))
    print(f"{args.network.name}: {len(data.x_test)} test images, reference model and cycle model on all; "
          f"{args.images} per lane count through Verilator", flush=True)
    pixels = network.input.quantize(data.x_test)
    reference = IntegerNetwork(network).run(pixels)
    rows = []
    for lanes in (int(p) for p in args.lanes.split(",")):
        plan = CorePlan(network, lanes=lanes)
        model = inference_cycles(plan, pixels, reference.spikes)
        bound = cycle_bound(plan, pixels, reference.spikes)
        report = simulate(args.network, pixels[:args.images], simulator="verilator", lanes=lanes,
                          build_root=args.out / "build", progress=False, jobs=args.jobs)
        row = {
            "lanes": lanes, "images_simulated": args.images, "rtl_equal": report["equal"],
            "rtl_cycles_mean": report["cycles_mean"], "rtl_bound_mean": report["bound_mean"],
            "rtl_ratio": round(report["cycles_over_bound"], 4),
            "test_set_images": len(pixels), "cycles_mean": float(model.mean()), "cycles_max": int(model.max()),
            "bound_mean": float(bound.mean()), "ratio": round(float(model.mean() / bound.mean()), 4),
            "images_per_s_at_50MHz": round(CLOCK_HZ / float(np.maximum(model + RESULT_GAP, plan.input_size).mean()), 1),
            "images_per_s_at_50MHz_compute_only": round(CLOCK_HZ / float(model.mean()), 1),
            f"images_per_s_at_{args.clock_mhz:g}MHz": round(
                args.clock_mhz * 1e6 / float(np.maximum(model + RESULT_GAP, plan.input_size).mean()), 1),
            "verilator_images_per_s_wall": round(report["sim_images_per_s_wall"], 2),
        }
        rows.append(row)
        print(json.dumps(row), flush=True)

    speed = {}
    for simulator in ("icarus", "verilator"):
        report = simulate(args.network, pixels[:args.speed_images], simulator=simulator, lanes=32,
                          build_root=args.out / "build", progress=False)
        speed[simulator] = {"wall_s": round(report["sim_seconds_wall"], 2), "equal": report["equal"],
                            "cycles_per_s": round(args.speed_images * (report["cycles_mean"] + plan.input_size)
                                                  / report["sim_seconds_wall"])}
    simulators = {"speed_images": args.speed_images, "lanes": 32, **speed,
                  "verilator_over_icarus": round(speed["icarus"]["wall_s"] / speed["verilator"]["wall_s"], 2)}
    print(json.dumps(simulators))
    stamp.write(args.out / "rtl.json", {"network": args.network.name, "sha256": network.sha256, "clock_mhz": args.clock_mhz,
                                        "rows": rows, "simulators": simulators}, bench="rtl")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    args.out.mkdir(parents=True, exist_ok=True)
    figure, axis = plt.subplots(figsize=(6, 4))
    x = np.arange(len(rows))
    axis.bar(x - 0.2, [r["bound_mean"] for r in rows], 0.4, label="bound: sum ceil(N/P) x active inputs")
    axis.bar(x + 0.2, [r["cycles_mean"] for r in rows], 0.4, label="RTL cycles (model = RTL)")
    for i, r in enumerate(rows):
        axis.text(i + 0.2, r["cycles_mean"], f"x{r['ratio']:.3f}", ha="center", va="bottom", fontsize=8)
    axis.set_xticks(x, [f"P={r['lanes']}" for r in rows])
    axis.set_yscale("log")
    axis.set_ylabel("cycles per inference (mean over the test set)")
    axis.set_title(f"{args.network.name}: cycles vs bound")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(args.out / "cycles.png", dpi=120)


if __name__ == "__main__":
    main()
