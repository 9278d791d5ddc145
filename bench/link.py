"""Link benchmark: throughput of the simulated board against the line-rate limit, clean and noisy.

Runs :func:`hone.host.infer.run_infer` on a simulated board (the whole board top level under Verilator
behind a pty, driven by the same host code as a real board) with a board target's configuration as
``hone build`` decides it (:func:`hone.boards.build.plan_build`: its clock, its baud rate, the lanes it
picks without ``--lanes``), once on a clean line and once per fault rate, and
prints the figures that matter: bytes per image on the wire (over the whole test set in each encoding
the board decodes, and as sent in the run), images per second in board time against
the line-rate limit (baud / 10 / bytes per image, busier direction), board time extrapolated to
10,000 images, results lost / duplicated, agreement with the integer reference, retransmissions.

    python bench/link.py [--network tests/data/fashion-dense-4bit.hone] [--board ulx3s-85f] [--images 200] [--faults 0.01]

One JSON line per run; a bar plot goes to bench/out/link/throughput.png.
"""

import argparse
import json
import pathlib
import sys

import stamp

ROOT = pathlib.Path(__file__).resolve().parents[1]

from hone.host.infer import run_infer


def test_set_bytes(network_path, *, clock_hz, baud):
    """Bytes on the wire per test image as one INFER frame (escapes included): mean, min and max over
    the whole test set, raw and in each encoding the board at ``clock_hz`` and ``baud`` decodes."""
    import numpy as np

    from hone.rtl import protocol
    from hone.rtl.board import link_figures
    from hone.network.datasets import network_test_images

    network, pixels, _, _ = network_test_images(network_path)
    figures = link_figures(network, clock_hz=clock_hz, baud=baud, slots=4)
    images = [protocol.pack_image(image, network.input.bits) for image in pixels.reshape(len(pixels), -1)]
    out = {"test_images": len(images), "row_bytes": figures["row_bytes"], "encodings": figures["encodings"]}
    for name, encodings in (("raw", 0), ("zero_run", protocol.Encoding.ZERO_RUN),
                            ("board", figures["encodings"])):
        if encodings & ~figures["encodings"]:
            continue
        sizes = np.array([protocol.request_frame_bytes(image, encodings=encodings, row_bytes=figures["row_bytes"])
                          for image in images])
        out[f"bytes_up_{name}"] = {"mean": round(float(sizes.mean()), 1), "min": int(sizes.min()),
                                   "max": int(sizes.max())}
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--network", type=pathlib.Path, default=ROOT / "tests/data/fashion-dense-4bit.hone")
    parser.add_argument("--images", type=int, default=200)
    parser.add_argument("--board", default="ulx3s-85f", help="board target whose clock, baud and default lanes to use")
    parser.add_argument("--baud", type=int, help="line rate (default: the board's)")
    parser.add_argument("--lanes", type=int, help="lanes (default: what hone build picks for the board)")
    parser.add_argument("--faults", default="0.01", help="comma-separated byte fault rates to run besides 0")
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "bench/out/link")
    args = parser.parse_args()

    from hone.boards.build import plan_build

    plan = plan_build(args.network, args.board, lanes=args.lanes, baud=args.baud)
    target, baud, lanes, clock_hz = plan.target, plan.baud, plan.lanes, plan.clock_hz
    print(f"{target.name}: {clock_hz / 1e6:g} MHz, {baud:,} baud, {lanes} lanes", flush=True)
    print(json.dumps(test_set_bytes(args.network, clock_hz=clock_hz, baud=baud)), flush=True)
    rates = [0.0] + [float(rate) for rate in args.faults.split(",") if rate]
    rows = []
    for rate in rates:
        report = run_infer(args.network, images=args.images, baud=baud, progress=True,
                           simulation={"target": target.name, "faults": rate, "seed": 1,
                                       "build_root": ROOT / "runs/sim-board", "clock_hz": clock_hz, "lanes": lanes})
        row = {
            "board": target.name, "clock_hz": clock_hz, "baud": baud, "lanes": lanes,
            "faults": rate, "images": report.images, "lost": report.lost, "duplicated": report.duplicated,
            "class_agreement": report.class_agreement, "spike_agreement": report.spike_agreement,
            "images_per_s_board": round(report.images_per_s_board, 3),
            "line_rate_limit": round(report.line_rate_limit, 3),
            "line_rate_fraction": round(report.line_rate_fraction, 4),
            "bytes_up_per_image_clean": round(report.frame_bytes_up, 1),
            "bytes_up_per_image_sent": round(report.wire_bytes_up_per_image, 1),
            "raw_frame_bytes_up": report.raw_frame_bytes_up,
            "board_seconds_per_10000": round(10_000 / report.images_per_s_board, 1),
            "retransmissions": report.link["retransmissions"], "final_chunk": report.link["chunk"],
            "wall_seconds": round(report.wall_seconds, 1), "equal": report.equal,
        }
        rows.append(row)
        print(json.dumps(row), flush=True)

    stamp.write(args.out / "link.json", rows, bench="link")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(5, 3.2))
    labels = [f"{row['faults']:.0%} faults" for row in rows]
    axis.bar(labels, [row["images_per_s_board"] for row in rows], color="tab:blue")
    axis.axhline(rows[0]["line_rate_limit"], color="tab:red", linestyle="--",
                 label=f"line-rate limit {rows[0]['line_rate_limit']:.2f}/s")
    axis.set_ylabel("images / s (board time)")
    axis.set_title(f"simulated {target.name}, {baud:,} baud, {args.images} images")
    axis.legend()
    figure.tight_layout()
    figure.savefig(args.out / "throughput.png", dpi=120)
    print(f"plot: {args.out / 'throughput.png'}")
    if not all(row["equal"] for row in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
