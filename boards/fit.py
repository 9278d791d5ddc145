"""Will a network fit a board? Block RAM and logic estimated before synthesis.

Memories are read from the elaborated design itself (so the estimate can never disagree with the
gateware about a width), through Amaranth's public ``platform.get_memory()`` override of
:class:`amaranth.lib.memory.Memory`, then packed into the family's block RAM configurations the way Yosys
does it: the aspect ratio that needs the fewest blocks. Memories too small to be worth a block
(ECP5: 64 words or fewer, or under a quarter of a block; iCE40, which has no distributed RAM:
ROMs of 32 words or fewer, memories of 4 words or fewer) and asynchronously read ones are left to
logic, as Yosys leaves them. Logic is a per-lane linear model
fitted to real builds (``bench/boards.py`` prints the figures it came from).
"""

import dataclasses
import math

from amaranth.hdl import Fragment, Shape

from hone.rtl.board import BoardTop
from hone.rtl.plan import useful_lanes

from .targets import TARGETS
from hone.network.errors import HoneError

__all__ = ["FitReport", "estimate", "check_fit", "choose_lanes", "FitError", "lane_candidates"]

# block RAM shapes (width, depth) per family: iCE40 SB_RAM40_4K; ECP5 DP16KD (36 bits wide only
# as a simple dual-port, which is how ROMs and one-read one-write memories map)
BLOCK_SHAPES = {
    "ice40": [(16, 256), (8, 512), (4, 1024), (2, 2048)],
    "ecp5": [(36, 512), (18, 1024), (9, 2048), (4, 4096), (2, 8192), (1, 16384)],
}
# LUTs ~ base + lanes * (per_bit * (weight_bits + accumulator_bits) + per_product_bit * K * (K + weight_bits)):
# an accumulator, its compare and weight muxing, plus each lane's K-term adder tree for w * q. Fitted to
# real builds: the default network (K=8, B=4, A=19) at 32 and 64 lanes on an ECP5-85F and the digits
# network (K=4, B=4, A=13) at 16 lanes on an iCE40 UP5K (bench/boards.py prints them)
LOGIC_MODEL = {
    "ice40": (3600, 3.0, 1.7),
    "ecp5": (4850, 2.9, 1.7),
}


class FitError(HoneError, ValueError):
    """The network does not fit the board as asked."""


@dataclasses.dataclass
class FitReport:
    board: str
    lanes: int
    memories: list            # (name, width, depth, blocks)
    bram_blocks: int
    bram_available: int
    rom_bits: int             # initialised memory bits (weights, thresholds, key)
    luts: int
    luts_available: int

    @property
    def fits(self):
        return self.bram_blocks <= self.bram_available and self.luts <= self.luts_available

    def as_dict(self):
        return {"board": self.board, "lanes": self.lanes, "bram_blocks": self.bram_blocks,
                "bram_available": self.bram_available, "rom_bits": self.rom_bits,
                "luts_estimate": self.luts, "luts_available": self.luts_available,
                "fits": self.fits,
                "memories": [{"name": n, "width": w, "depth": d, "blocks": b}
                             for n, w, d, b in self.memories]}


class _MemoryCensus:
    """A stand-in platform for elaboration that takes each :class:`amaranth.lib.memory.Memory` through
    its documented ``get_memory()`` override: it notes the memory and gives back an empty fragment
    (the design is only counted, never converted)."""

    def __init__(self):
        self.memories = {}      # placeholder fragment -> the Memory it stands for

    def get_memory(self, memory):
        placeholder = Fragment()
        self.memories[placeholder] = memory
        return placeholder


def _memories(top):
    """``(path, width, depth, rom, asynchronous)`` of every memory in ``top``, in elaboration order."""
    census = _MemoryCensus()
    found = []

    def walk(fragment, path):
        for sub, name, _ in fragment.subfragments:
            memory = census.memories.get(sub)
            if memory is None:
                walk(sub, path + [name])
                continue
            asynchronous = any(port.domain == "comb" for port in memory.read_ports)
            found.append((".".join(path + [name]), Shape.cast(memory.shape).width, memory.depth,
                          not memory.write_ports, asynchronous))
    walk(Fragment.get(top, census), [])
    return found


def blocks_for(family, width, depth, *, rom=False, asynchronous=False):
    """Blocks of ``family`` block RAM for a ``width`` x ``depth`` memory (0: left to logic)."""
    shapes = BLOCK_SHAPES[family]
    if asynchronous:          # block RAM reads are synchronous
        return 0
    if family == "ice40":     # no distributed RAM: only small ROMs and tiny FIFOs become logic
        if (rom and depth <= 32) or depth <= 4:
            return 0
    elif depth <= 64 or width * depth * 4 < shapes[0][0] * shapes[0][1]:
        return 0
    return min(math.ceil(width / w) * math.ceil(depth / d) for w, d in shapes)


def estimate(network, board, *, lanes, clock_hz=None, baud=None, slots=4):
    """:class:`FitReport` for ``network`` with ``lanes`` on ``board`` (a :class:`Target`) at
    ``clock_hz`` and ``baud`` (default: the board's)."""
    clock_hz = clock_hz or board.clock_hz
    baud = baud or board.uart(clock_hz).baud
    top = BoardTop(network, lanes=lanes, clock_hz=clock_hz, baud=baud, slots=slots)
    memories, rom_bits = [], 0
    for name, width, depth, rom, asynchronous in _memories(top):
        memories.append((name, width, depth,
                         blocks_for(board.family, width, depth, rom=rom, asynchronous=asynchronous)))
        if rom:
            rom_bits += width * depth
    plan = top.core.plan
    base, per_bit, per_product_bit = LOGIC_MODEL[board.family]
    K, B, A = plan.input_bits, plan.weight_bits, plan.accumulator_bits
    per_lane = per_bit * (B + A) + per_product_bit * K * (K + B)
    if plan.has_conv:   # a second lane datapath (adders into the accumulator memory), its forwarding
        per_lane += per_bit * (B + 3 * A) + per_product_bit * K * (K + B)   # muxes and compares
    luts = int(base + lanes * per_lane)
    return FitReport(board.name, lanes, memories, sum(m[3] for m in memories), board.bram_blocks,
                     rom_bits, luts, board.luts)


def lane_candidates(network):
    """Powers of two up to the widest layer (more lanes than neurons only idle)."""
    widest = useful_lanes(network)[0]
    return [1 << k for k in range(max(1, widest - 1).bit_length() + 1)]


def _advice(network, board, report):
    lines = []
    smaller = [lanes for lanes in lane_candidates(network) if lanes < report.lanes
               and estimate(network, board, lanes=lanes).fits]
    if smaller:
        lines.append(f"fewer lanes: --lanes {max(smaller)} fits")
    elif report.lanes > 1:
        lines.append(f"fewer lanes do not help: even 1 lane needs "
                     f"{estimate(network, board, lanes=1).bram_blocks} blocks")
    weights = sum(int(layer.weights.size) for layer in network.layers if layer.kind != "maxpool2d")
    room = board.bram_bits * 3 // 4       # what is left beside event lists, image slots, padding
    bits = room // weights
    if network.weight_bits > 1 and bits >= 1:
        lines.append(f"fewer weight bits: {weights:,} weights at {min(bits, network.weight_bits - 1)} "
                     f"bits would ({weights * network.weight_bits / 1024:.0f} kbit now; "
                     f"hone export --weight-bits {min(bits, network.weight_bits - 1)})")
    elif network.weight_bits > 1:
        lines.append(f"fewer weight bits do not help: {weights:,} weights need "
                     f"{weights / 1024:.0f} kbit even at 1 bit")
    lines.append(f"a smaller network: about {room // network.weight_bits:,} {network.weight_bits}-bit "
                 f"weights fit ({weights:,} now; hone train --widths ...)")
    bigger = [other.name for other in TARGETS.values() if other.name != board.name
              and other.bram_bits > board.bram_bits
              and estimate(network, other, lanes=min(report.lanes, 32)).fits]
    if bigger:
        lines.append(f"a bigger part: {', '.join(bigger)}")
    return lines


def check_fit(network, board, *, lanes, clock_hz=None, baud=None):
    """The :class:`FitReport`, or :class:`FitError` with needed vs available and what would fit."""
    report = estimate(network, board, lanes=lanes, clock_hz=clock_hz, baud=baud)
    if report.fits:
        return report
    needed = []
    if report.bram_blocks > report.bram_available:
        block_kbit = board.bram_block_bits / 1024
        needed.append(f"block RAM: needs {report.bram_blocks} blocks ({report.bram_blocks * block_kbit:.0f} "
                      f"kbit, of which {report.rom_bits / 1024:.0f} kbit initialised ROM), the "
                      f"{board.part} has {report.bram_available} ({board.bram_bits / 1024:.0f} kbit)")
        big = sorted(report.memories, key=lambda m: -m[3])[:3]
        needed.append("largest memories: " + ", ".join(f"{n} {w}x{d} = {b} blocks" for n, w, d, b in big))
    if report.luts > report.luts_available:
        needed.append(f"logic: needs about {report.luts:,} LUTs, the {board.part} has {report.luts_available:,}")
    advice = _advice(network, board, report)
    raise FitError(f"network does not fit {board.name} with {lanes} lane{'s' if lanes > 1 else ''}: "
                   + "; ".join(needed)
                   + ". What would fit: " + "; ".join(advice))


def choose_lanes(network, board, *, clock_hz=None, baud=None):
    """Candidate lane counts that fit, largest first (the build then checks timing)."""
    fitting = [lanes for lanes in lane_candidates(network)
               if estimate(network, board, lanes=lanes, clock_hz=clock_hz, baud=baud).fits]
    if not fitting:
        check_fit(network, board, lanes=1, clock_hz=clock_hz, baud=baud)   # raises with the numbers
    return sorted(fitting, reverse=True)
