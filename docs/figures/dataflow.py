"""Draw hone's data-flow picture: docs/figures/dataflow.png (README and docs/index.md show it).

    python docs/figures/dataflow.py

The boxes are the top-level folders; an arrow is data handed on (the network file is the only
thing the training side gives the hardware side). The folder each box names is checked against the
repository, so the picture cannot name a folder that is gone.
"""

import pathlib

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = pathlib.Path(__file__).with_name("dataflow.png")

# name, folder, (x, y) centre, colour, lines below the name
BOXES = {
    "train": ("training/", (1.1, 3.0), "#cfe2f3", ["Keras model", "sharpened bottom-up", "N-hot output"]),
    "nir": ("network/nirgraph.py", (1.1, 0.9), "#e6e6e6", ["NIR graph", "in and out"]),
    "file": ("network/", (4.4, 2.0), "#fde9c8", ["network file", "integers + thresholds", "bit-exact reference"]),
    "rtl": ("rtl/", (7.7, 3.0), "#d9ead3", ["Amaranth core", "event-driven lanes", "parameter ROMs"]),
    "sim": ("sim/", (11.0, 3.9), "#d9ead3", ["cocotb", "Icarus / Verilator", "spike for spike"]),
    "boards": ("boards/", (11.0, 1.7), "#d9ead3", ["yosys + nextpnr", "bitstream", "iCE40 / ECP5"]),
    "host": ("host/", (14.3, 2.8), "#f4cccc", ["serial link", "framed, CRC-checked", "board or simulated"]),
    "cli": ("cli/", (14.3, 0.5), "#e6e6e6", ["hone flow / train /", "export / sim / build /", "infer / nir"]),
}
ARROWS = [("train", "file", "export"), ("nir", "file", "import"), ("file", "nir", ""), ("file", "rtl", "plan"),
          ("rtl", "sim", ""), ("rtl", "boards", ""), ("sim", "host", "sim-board"), ("boards", "host", "program")]
WIDTH, HEIGHT = 2.2, 1.3


def _edge(centre, towards, pad=0.08):
    """Where the line from ``centre`` to ``towards`` leaves the box around ``centre``."""
    (x, y), (tx, ty) = centre, towards
    dx, dy = tx - x, ty - y
    scale = min((WIDTH / 2 + pad) / abs(dx) if dx else float("inf"),
                (HEIGHT / 2 + pad) / abs(dy) if dy else float("inf"))
    return x + dx * scale, y + dy * scale


def draw(path=OUT):
    for folder, *_ in BOXES.values():
        if not (ROOT / folder).exists():
            raise SystemExit(f"docs/figures/dataflow.py: {folder} is not in the repository; update BOXES")
    figure, axes = plt.subplots(figsize=(14.5, 4.6))
    for name, (folder, (x, y), colour, lines) in BOXES.items():
        axes.add_patch(FancyBboxPatch((x - WIDTH / 2, y - HEIGHT / 2), WIDTH, HEIGHT,
                                      boxstyle="round,pad=0.05", facecolor=colour, edgecolor="#444"))
        axes.text(x, y + 0.38, folder, ha="center", va="center", fontsize=10, weight="bold", family="monospace")
        axes.text(x, y - 0.12, "\n".join(lines), ha="center", va="center", fontsize=8.5, linespacing=1.3)
    for start, end, label in ARROWS:
        a, b = BOXES[start][1], BOXES[end][1]
        (x0, y0), (x1, y1) = _edge(a, b), _edge(b, a)
        bend = 0.15 if {start, end} == {"file", "nir"} else 0.0
        axes.add_patch(FancyArrowPatch((x0, y0), (x1, y1), arrowstyle="-|>", mutation_scale=14, color="#333",
                                       shrinkA=2, shrinkB=2, connectionstyle=f"arc3,rad={bend}"))
        if label:
            axes.text((x0 + x1) / 2, (y0 + y1) / 2 + 0.12, label, ha="center", va="bottom", fontsize=8,
                      style="italic", color="#333")
    axes.text(4.4, 2.0 - HEIGHT / 2 - 0.22, "the only contract between\nthe ML and the hardware side",
              ha="center", va="top", fontsize=8, color="#7a5200")
    axes.text(14.3, 0.5 + HEIGHT / 2 + 0.12, "drives every step", ha="center", va="bottom", fontsize=8,
              style="italic", color="#333")
    axes.set_xlim(-0.2, 15.6)
    axes.set_ylim(-0.4, 4.7)
    axes.axis("off")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


if __name__ == "__main__":
    print(draw())
