"""``NetworkCore``: a whole network on ``P`` shared neuron units, event-driven.

Every neuron layer reads an *event list* (its active inputs, written by the layer below) and writes
the next one, so a layer costs one cycle per active input per group of ``P`` neurons (dense), or one
per (active input, output position it reaches) per group of ``P`` filters (conv2d), never one per
fan-in. Pixels arrive as ``K``-bit integers; only non-zero pixels are listed, and each is issued once:
the lanes add ``w * q``, all of the pixel's bit-planes in one cycle.

Dense layers accumulate in :class:`~hone.rtl.neuron.NeuronArray`'s registers. Conv layers accumulate
in a per-position memory (``H' * W'`` words of ``P * A`` bits) through a read-modify-write pipeline
with forwarding, then walk the positions once to compare and clear them; a max-pool after a conv
layer is an OR of each window's spikes, folded into that walk, so each pooled unit is listed once.
The output layer's spikes vote through the N-hot key ROM as they are emitted, keeping a running
arg-max that breaks ties towards the lowest class; a network without classes (its output is the spike
vector itself) has neither the key ROM nor the vote, and its label is 0.
The exact cycle count is :func:`hone.rtl.cycles.inference_cycles`; docs/rtl.md has the block diagram.
"""

from amaranth import C, Array, Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from .cycles import CONV_DRAIN
from .neuron import NeuronArray, weighted
from .plan import CorePlan, _bits_for

__all__ = ["NetworkCore", "trace_units"]


def _lowest_set(bits):
    """``(any, index)`` of the lowest set bit of ``bits``, as a balanced tree: log2 levels of muxes
    where a chain of ifs would be one level per lane."""
    if len(bits) == 1:
        return bits[0], C(0, 0)
    half = 1 << ((len(bits) - 1).bit_length() - 1)
    low_any, low_index = _lowest_set(bits[:half])
    high_any, high_index = _lowest_set(bits[half:])
    width = (half - 1).bit_length()
    return low_any | high_any, Cat(Mux(low_any, low_index, high_index)[:width].as_unsigned(),
                                   ~low_any)[:width + 1]


def trace_units(neuron, mask):
    """The units one trace transfer reports: ``neuron + j`` for every set bit ``j`` of ``mask``."""
    return [neuron + bit for bit in range(int(mask).bit_length()) if mask >> bit & 1]


def _times(value, constant):
    """``value * constant`` for a non-negative constant, as shifted adds (no DSP block)."""
    terms = [value << bit for bit in range(max(int(constant).bit_length(), 1)) if constant >> bit & 1]
    return sum(terms[1:], terms[0]) if terms else C(0, 1)


def _list_layout(plan, index):
    """Entry of event list ``index``: a flat input index (dense consumer) or ``(y, x, c)`` (conv
    consumer); list 0 also holds the pixel's value."""
    consumer = plan.layers[index]
    if consumer.kind == "conv2d":
        fields = {"y": unsigned(_bits_for(consumer.in_height - 1)), "x": unsigned(_bits_for(consumer.in_width - 1)),
                  "c": unsigned(_bits_for(consumer.channels - 1))}
    else:
        fields = {"index": unsigned(_bits_for(consumer.inputs - 1))}
    if index == 0:
        fields["bits"] = unsigned(plan.input_bits)
    return data.StructLayout(fields)


class NetworkCore(wiring.Component):
    """Inference engine for one network file.

    Parameters
    ----------
    network : hone.network.netfile.Network
        The network to run (its weights become ROM contents).
    lanes : int
        Neuron units ``P``: the output neurons of a layer are processed ``P`` at a time.
    trace : bool
        Add the ``trace`` port (every spike of every layer, for verification).

    Members
    -------
    pixels : In(stream.Signature(unsigned(K)))
        The image, one ``K``-bit pixel per transfer in row-major H, W, C order; the count of pixels
        delimits images. Ready while one of the two input buffers is free: the next image loads
        while the current one runs.
    result : Out(stream.Signature(result_layout))
        One transfer per image: ``label`` (the decoded class; 0 for a network whose output is its spike
        vector) and ``cycles`` (the inference's cycles).
    trace : Out(stream.Signature(trace_layout))
        Present with ``trace=True``: the spikes of every network layer, in order: ``layer`` (the
        network file's layer index), ``neuron`` and ``mask``, meaning units ``neuron + j`` for every
        set bit ``j`` of ``mask`` (dense and pooled spikes: one per transfer, mask 1; a conv layer:
        the ``P`` filters of one position). An image's spikes all precede its result. The core waits
        while it is not ready.
    """

    def __init__(self, network, *, lanes, trace=False):
        self._plan = CorePlan(network, lanes=lanes)
        self._trace = bool(trace)
        plan = self._plan
        self.result_layout = data.StructLayout({
            "label": unsigned(_bits_for(max(plan.classes - 1, 0))),
            "cycles": unsigned(plan.cycle_bits),
        })
        self.trace_layout = data.StructLayout({
            "layer": unsigned(_bits_for(len(network.layers) - 1)),
            "neuron": unsigned(_bits_for(max(plan.trace_widths()) - 1)),
            "mask": unsigned(plan.lanes),
        })
        members = {
            "pixels": In(stream.Signature(unsigned(plan.input_bits))),
            "result": Out(stream.Signature(self.result_layout)),
        }
        if self._trace:
            members["trace"] = Out(stream.Signature(self.trace_layout))
        super().__init__(members)

    @property
    def plan(self):
        return self._plan

    def elaborate(self, platform):
        m = Module()
        plan = self._plan
        P, K, B, A = plan.lanes, plan.input_bits, plan.weight_bits, plan.accumulator_bits
        layers = plan.layers
        last = len(layers) - 1
        convs = [layer for layer in layers if layer.kind == "conv2d"]
        depths = plan.list_depths()

        m.submodules.neurons = neurons = NeuronArray(
            lanes=P, weight_bits=B, accumulator_bits=A, value_bits=K)

        # -- memories: event lists (RAM), weights and thresholds (ROM), the N-hot key (ROM)
        list_reads, list_writes = [], []
        for index, depth in enumerate(depths):
            if index == 0:
                depth *= 2        # two banks: the next image loads while this one runs
            m.submodules[f"events_{index}"] = events = memory.Memory(
                shape=_list_layout(plan, index), depth=depth, init=[])
            list_reads.append(events.read_port())
            list_writes.append(events.write_port())
        weight_reads, threshold_reads = [], []
        for layer in layers:
            m.submodules[f"weights_{layer.index}"] = rom = memory.Memory(
                shape=unsigned(P * B), depth=len(layer.weight_words), init=layer.weight_words)
            weight_reads.append(rom.read_port())
            m.submodules[f"thresholds_{layer.index}"] = rom = memory.Memory(
                shape=unsigned(P * A), depth=layer.groups, init=layer.threshold_words)
            threshold_reads.append(rom.read_port())
        if plan.classes:
            m.submodules.key = key = memory.Memory(
                shape=range(plan.classes + 1), depth=len(plan.unit_class), init=plan.unit_class)
            key_read = key.read_port(domain="comb")

        # -- sequencer state
        layer = Signal(range(max(len(layers), 2)))
        group = Signal(range(max(layer.groups for layer in layers)))
        group_next = Signal.like(group)
        pointer = Signal(range(max(depths) + 1))
        pointer_next = Signal.like(pointer)
        counts = [Signal(range(depth + 1), name=f"count_{index}") for index, depth in enumerate(depths)]
        weight_base = Signal(range(max(len(l.weight_words) for l in layers) + 1))
        neuron_base = Signal(range(max(l.groups * P for l in layers) + 1))
        pending = Signal(P)                   # lanes that fired and are not yet emitted
        pixel = Signal(range(plan.input_size))
        load_bank, run_bank = Signal(), Signal()
        bank_full = Array(Signal(name=f"bank_full_{bank}") for bank in range(2))
        bank_count = Array(Signal.like(counts[0], name=f"bank_count_{bank}") for bank in range(2))
        cycles = Signal(plan.cycle_bits)
        issued = Signal()                     # an event was issued last cycle: its weights are valid now
        issued_value = Signal(K)
        staged = Signal()                     # ... and a cycle later they are in registers, then added
        staged_value = Signal(K)
        # no reset: with one, Yosys' ECP5 flow gave these bits two drivers for the conv default's ROMs
        staged_weights = Signal(P * B, reset_less=True)
        votes = [Signal(range(plan.nhot + 1), name=f"votes_{cls}") for cls in range(plan.classes)]
        best = Signal(range(max(plan.classes, 2)))
        best_votes = Signal(range(plan.nhot + 1))

        m.d.comb += [group_next.eq(group), pointer_next.eq(pointer)]
        m.d.sync += [group.eq(group_next), pointer.eq(pointer_next)]
        # read addresses follow the *next* pointer, so read data always belongs to the current one
        m.d.comb += counts[0].eq(bank_count[run_bank])
        m.d.comb += list_reads[0].addr.eq(pointer_next + Mux(run_bank, plan.input_size, 0))
        for read in list_reads[1:]:
            m.d.comb += read.addr.eq(pointer_next)
        for read in threshold_reads:
            m.d.comb += read.addr.eq(group_next)

        # -- the current layer's view of its memories
        event_index = Signal(_bits_for(max(depths) - 1))
        event_bits = Signal(K)
        count = Signal.like(pointer)
        last_group = Signal()
        fan_in = Signal.like(weight_base)
        weights = Signal(P * B)
        thresholds = Signal(P * A)
        is_conv = Signal()
        # lanes past the last neuron (or filter) of the last group never fire: their weights are
        # padding (for 1-bit weights not even zero), so their fire bits are masked off
        real_lanes = Signal(P)
        trace_layer = Signal(_bits_for(len(plan.network.layers) - 1))     # of this layer's own spikes
        with m.Switch(layer):
            for plan_layer, read, w_read, t_read, layer_count in zip(
                    layers, list_reads, weight_reads, threshold_reads, counts):
                with m.Case(plan_layer.index):
                    if plan_layer.kind == "dense":   # (a conv layer's weights go to its own pipeline)
                        m.d.comb += event_index.eq(read.data.index)
                        m.d.comb += event_bits.eq(read.data.bits if plan_layer.index == 0 else 1)
                        m.d.comb += weights.eq(w_read.data)
                    m.d.comb += [
                        count.eq(layer_count),
                        last_group.eq(group == plan_layer.groups - 1),
                        fan_in.eq(len(plan_layer.weight_words) // plan_layer.groups),
                        thresholds.eq(t_read.data),
                        is_conv.eq(plan_layer.kind == "conv2d"),
                        real_lanes.eq(Mux(group == plan_layer.groups - 1,
                                          (1 << (plan_layer.filters if plan_layer.kind == "conv2d"
                                                 else plan_layer.outputs) - (plan_layer.groups - 1) * P) - 1,
                                          (1 << P) - 1)),
                        trace_layer.eq(plan.trace_layers[plan_layer.index][0]),
                    ]
        # the event list's output is registered before it addresses the weight ROM (a block RAM's
        # clock-to-output, the layer select and the address adder would not fit one cycle)
        listed = Signal()
        listed_index = Signal.like(event_index)
        listed_value = Signal(K)
        m.d.sync += [listed.eq(0), issued.eq(listed), issued_value.eq(listed_value)]
        for plan_layer, read in zip(layers, weight_reads):
            if plan_layer.kind == "dense":
                m.d.comb += read.addr.eq(weight_base + listed_index)

        # the weight ROM's output goes through a register before the lanes multiply and add: the ROM's
        # clock-to-output and the layer's ROM select then do not share a cycle with the adder tree
        m.d.sync += [staged.eq(issued), staged_value.eq(issued_value), staged_weights.eq(weights)]
        m.d.comb += [
            neurons.add.eq(staged),
            neurons.value.eq(staged_value),
            neurons.weights.eq(staged_weights),
            neurons.thresholds.eq(thresholds),
        ]

        # the lowest pending lane
        lane = Signal(range(P))
        m.d.comb += lane.eq(_lowest_set(pending)[1])
        pending_after = Signal(P)
        m.d.comb += pending_after.eq(pending & ~(C(1, P) << lane)[:P])   # no P-long carry chain
        neuron = Signal.like(neuron_base)
        m.d.comb += neuron.eq(neuron_base + lane)

        # -- the conv datapath: per-position accumulators in a memory, read-modify-written
        if convs:
            conv = self._conv_datapath(m, plan, convs, list_reads, weight_reads, layer, weight_base,
                                       thresholds, neuron_base, real_lanes)
        else:
            conv = None

        def start_group(events):
            m.d.comb += pointer_next.eq(0)
            with m.If(is_conv):
                if conv is not None:
                    m.d.sync += conv["cur_valid"].eq(0)
                    with m.If(events == 0):
                        conv["begin_walk"]()
                    with m.Else():
                        m.next = "CPASS"
            with m.Elif(events == 0):
                m.next = "COMPARE"
            with m.Else():
                m.next = "PASS"

        def finish_group():
            with m.If(last_group):
                m.d.comb += group_next.eq(0)
                m.d.sync += [weight_base.eq(0), neuron_base.eq(0)]
                if last:
                    with m.If(layer == last):
                        m.next = "DONE"
                    with m.Else():
                        m.d.sync += layer.eq(layer + 1)
                        m.next = "START"
                else:
                    m.next = "DONE"
            with m.Else():
                m.d.comb += group_next.eq(group + 1)
                m.d.sync += [weight_base.eq(weight_base + fan_in), neuron_base.eq(neuron_base + P)]
                start_group(count)

        def trace_beat(layer_index, unit, mask, accepted):
            """Offer one trace transfer; ``accepted`` is set when it is taken (always without trace)."""
            if self._trace:
                m.d.comb += [
                    self.trace.valid.eq(1),
                    self.trace.payload.layer.eq(layer_index),
                    self.trace.payload.neuron.eq(unit),
                    self.trace.payload.mask.eq(mask),
                    accepted.eq(self.trace.ready),
                ]
            else:
                m.d.comb += accepted.eq(1)

        # -- loading, into whichever bank is free (the other may be running)
        m.d.comb += self.pixels.ready.eq(~bank_full[load_bank])
        first = layers[0]
        if first.kind == "conv2d":   # list 0 holds (y, x, c): walk them along with the pixel count
            load_y = Signal(range(first.in_height))
            load_x = Signal(range(first.in_width))
            load_c = Signal(range(first.channels))
        with m.If(self.pixels.valid & self.pixels.ready):
            with m.If(self.pixels.payload != 0):
                m.d.comb += [
                    list_writes[0].addr.eq(bank_count[load_bank] + Mux(load_bank, plan.input_size, 0)),
                    list_writes[0].data.bits.eq(self.pixels.payload),
                    list_writes[0].en.eq(1),
                ]
                if first.kind == "conv2d":
                    m.d.comb += [list_writes[0].data.y.eq(load_y), list_writes[0].data.x.eq(load_x),
                                 list_writes[0].data.c.eq(load_c)]
                else:
                    m.d.comb += list_writes[0].data.index.eq(pixel)
                m.d.sync += bank_count[load_bank].eq(bank_count[load_bank] + 1)
            with m.If(pixel == plan.input_size - 1):
                m.d.sync += [pixel.eq(0), bank_full[load_bank].eq(1), load_bank.eq(~load_bank)]
            with m.Else():
                m.d.sync += pixel.eq(pixel + 1)
            if first.kind == "conv2d":
                with m.If(load_c == first.channels - 1):
                    m.d.sync += load_c.eq(0)
                    with m.If(load_x == first.in_width - 1):
                        m.d.sync += load_x.eq(0)
                        with m.If(load_y == first.in_height - 1):
                            m.d.sync += load_y.eq(0)
                        with m.Else():
                            m.d.sync += load_y.eq(load_y + 1)
                    with m.Else():
                        m.d.sync += load_x.eq(load_x + 1)
                with m.Else():
                    m.d.sync += load_c.eq(load_c + 1)

        with m.FSM(init="IDLE"):
            with m.State("IDLE"):
                with m.If(bank_full[run_bank]):
                    m.next = "START"

            with m.State("START"):
                m.d.sync += cycles.eq(cycles + 1)
                start_group(count)

            # -- dense layers
            with m.State("PASS"):
                m.d.sync += [cycles.eq(cycles + 1), listed.eq(1), listed_index.eq(event_index),
                             listed_value.eq(event_bits)]
                m.d.comb += pointer_next.eq(pointer + 1)
                with m.If(pointer + 1 == count):
                    m.next = "WAIT"

            with m.State("WAIT"):            # the last event addresses the weight ROM
                m.d.sync += cycles.eq(cycles + 1)
                m.next = "READ"

            with m.State("READ"):            # ... its weights are read
                m.d.sync += cycles.eq(cycles + 1)
                m.next = "ADD"

            with m.State("ADD"):             # ... and added
                m.d.sync += cycles.eq(cycles + 1)
                m.next = "COMPARE"

            with m.State("COMPARE"):
                fired = Signal(P)
                m.d.comb += fired.eq(neurons.fire & real_lanes)
                m.d.sync += [cycles.eq(cycles + 1), pending.eq(fired)]
                m.d.comb += neurons.clear.eq(1)
                with m.If(fired == 0):
                    finish_group()
                with m.Else():
                    m.next = "EMIT"

            with m.State("EMIT"):
                m.d.sync += cycles.eq(cycles + 1)
                accepted = Signal()
                trace_beat(trace_layer, neuron, 1, accepted)
                with m.If(accepted):
                    for index, write in enumerate(list_writes[1:]):
                        if layers[index].kind != "dense":
                            continue
                        with m.If(layer == index):
                            m.d.comb += [write.addr.eq(counts[index + 1]), write.data.index.eq(neuron),
                                         write.en.eq(1)]
                            m.d.sync += counts[index + 1].eq(counts[index + 1] + 1)
                    if plan.classes:    # the output layer's spike votes for its class
                        with m.If(layer == last):
                            m.d.comb += key_read.addr.eq(neuron)
                            for cls, tally in enumerate(votes):
                                with m.If(key_read.data == cls):
                                    m.d.sync += tally.eq(tally + 1)
                                    with m.If((tally + 1 > best_votes) |
                                              ((tally + 1 == best_votes) & (best > cls))):
                                        m.d.sync += [best.eq(cls), best_votes.eq(tally + 1)]
                    m.d.sync += pending.eq(pending_after)
                    with m.If(pending_after == 0):
                        finish_group()

            # -- conv layers
            if conv is not None:
                self._conv_states(m, plan, conv, layer, layers, cycles, pointer, pointer_next, count,
                                  pending, pending_after, lane, neuron_base, list_writes, counts,
                                  trace_beat, trace_layer, finish_group)

            with m.State("DONE"):
                m.d.comb += [
                    self.result.valid.eq(1),
                    self.result.payload.label.eq(best),
                    self.result.payload.cycles.eq(cycles),
                ]
                with m.If(self.result.ready):
                    m.d.sync += [layer.eq(0), cycles.eq(0), best.eq(0), best_votes.eq(0)]
                    m.d.sync += [list_count.eq(0) for list_count in counts[1:]]
                    m.d.sync += [bank_count[run_bank].eq(0), bank_full[run_bank].eq(0), run_bank.eq(~run_bank)]
                    m.d.sync += [tally.eq(0) for tally in votes]
                    m.next = "IDLE"
        return m

    def _conv_datapath(self, m, plan, convs, list_reads, weight_reads, layer, weight_base, thresholds,
                       neuron_base, real_lanes):
        """Signals of the conv path: the event being spread over its kernel offsets, the
        read-modify-write pipeline into the accumulator memory, and the position walk."""
        P, K, B, A = plan.lanes, plan.input_bits, plan.weight_bits, plan.accumulator_bits
        m.submodules.accumulators = memory_ = memory.Memory(
            shape=unsigned(P * A), depth=plan.accumulator_words(), init=[])
        acc_read, acc_write = memory_.read_port(), memory_.write_port()
        address = range(plan.accumulator_words())
        c = {}

        # the event being spread: its (y, x, c), value, and the kernel offsets (i, j) still to issue
        cur_valid = Signal()
        cur_y = Signal(range(max(l.in_height for l in convs)))
        cur_x = Signal(range(max(l.in_width for l in convs)))
        cur_c = Signal(range(max(l.channels for l in convs)))
        cur_v = Signal(K)
        kernel = range(max(max(l.kh, l.kw) for l in convs))
        cur_i, cur_i_hi, cur_j, cur_j_lo, cur_j_hi = (Signal(kernel, name=f"cur_{n}")
                                                      for n in ("i", "i_hi", "j", "j_lo", "j_hi"))
        event_done = Signal()
        m.d.comb += event_done.eq((cur_i == cur_i_hi) & (cur_j == cur_j_hi))

        # what one issue addresses: the weight word and the accumulator of its output position
        issue_weight = Signal.like(weight_base)
        issue_acc = Signal(address)
        load = Signal()                   # load the next event from the list into cur_*
        with m.Switch(layer):
            for plan_layer, read in zip(plan.layers, list_reads):
                if plan_layer.kind != "conv2d":
                    continue
                with m.Case(plan_layer.index):
                    oy = cur_y + plan_layer.top - cur_i
                    ox = cur_x + plan_layer.left - cur_j
                    tap = _times(_times(cur_i, plan_layer.kw) + cur_j, plan_layer.channels) + cur_c
                    m.d.comb += [issue_acc.eq(_times(oy, plan_layer.out_width) + ox),
                                 issue_weight.eq(weight_base + tap)]
                    with m.If(load):
                        y, x = read.data.y, read.data.x
                        top_y, left_x = y + plan_layer.top, x + plan_layer.left
                        last_y, last_x = plan_layer.out_height - 1, plan_layer.out_width - 1
                        m.d.sync += [
                            cur_y.eq(y), cur_x.eq(x), cur_c.eq(read.data.c),
                            cur_v.eq(read.data.bits if plan_layer.index == 0 else 1),
                            cur_i.eq(Mux(top_y > last_y, top_y - last_y, 0)),
                            cur_i_hi.eq(Mux(top_y > plan_layer.kh - 1, plan_layer.kh - 1, top_y)),
                            cur_j.eq(Mux(left_x > last_x, left_x - last_x, 0)),
                            cur_j_lo.eq(Mux(left_x > last_x, left_x - last_x, 0)),
                            cur_j_hi.eq(Mux(left_x > plan_layer.kw - 1, plan_layer.kw - 1, left_x)),
                        ]

        # pipeline: S1 addresses the weight ROM; S2 addresses the accumulator; S3 adds; S4 writes.
        # S3 takes the newest value of its position from S4 or S5 (written, or being written, after
        # S3's read was sampled)
        stages = {}
        for name in ("s1", "s2", "s3", "s4", "s5"):
            stages[name] = (Signal(name=f"{name}_valid"), Signal(address, name=f"{name}_acc"))
        s1_value, s2_value = Signal(K), Signal(K)
        s1_weight = Signal.like(weight_base)
        s3_weights = Signal(P * B, reset_less=True)
        s3_value = Signal(K)
        s4_sum, s5_sum = Signal(P * A), Signal(P * A)
        issue = Signal()
        m.d.sync += [
            stages["s1"][0].eq(issue), stages["s1"][1].eq(issue_acc), s1_value.eq(cur_v),
            s1_weight.eq(issue_weight),
            stages["s2"][0].eq(stages["s1"][0]), stages["s2"][1].eq(stages["s1"][1]), s2_value.eq(s1_value),
            stages["s3"][0].eq(stages["s2"][0]), stages["s3"][1].eq(stages["s2"][1]), s3_value.eq(s2_value),
            stages["s4"][0].eq(stages["s3"][0]), stages["s4"][1].eq(stages["s3"][1]),
            stages["s5"][0].eq(stages["s4"][0]), stages["s5"][1].eq(stages["s4"][1]), s5_sum.eq(s4_sum),
        ]
        for plan_layer, read in zip(plan.layers, weight_reads):
            if plan_layer.kind == "conv2d":
                m.d.comb += read.addr.eq(s1_weight)
        conv_weights = Signal(P * B)
        with m.Switch(layer):
            for plan_layer, read in zip(plan.layers, weight_reads):
                if plan_layer.kind == "conv2d":
                    with m.Case(plan_layer.index):
                        m.d.comb += conv_weights.eq(read.data)
        m.d.sync += s3_weights.eq(conv_weights)
        (s3_valid, s3_acc), (s4_valid, s4_acc), (s5_valid, s5_acc) = (
            stages["s3"], stages["s4"], stages["s5"])
        current = Signal(P * A)
        with m.If(s4_valid & (s4_acc == s3_acc)):
            m.d.comb += current.eq(s4_sum)
        with m.Elif(s5_valid & (s5_acc == s3_acc)):
            m.d.comb += current.eq(s5_sum)
        with m.Else():
            m.d.comb += current.eq(acc_read.data)
        sums = []
        for lane_index in range(P):
            weight = s3_weights[lane_index * B:(lane_index + 1) * B]
            weight = Mux(weight, C(-1, signed(2)), C(1, signed(2))) if B == 1 else weight.as_signed()
            total = current[lane_index * A:(lane_index + 1) * A].as_signed() + weighted(weight, s3_value, K)
            sums.append(total[:A])
        m.d.sync += s4_sum.eq(Cat(*sums))

        # the accumulator memory's ports: the pipeline by default, the walk when it runs
        acc_read_addr, acc_write_addr = Signal(address), Signal(address)
        acc_write_data, acc_write_en = Signal(P * A), Signal()
        m.d.comb += [
            acc_read_addr.eq(stages["s2"][1]),
            acc_write_addr.eq(s4_acc), acc_write_data.eq(s4_sum), acc_write_en.eq(s4_valid),
            acc_read.addr.eq(acc_read_addr),
            acc_write.addr.eq(acc_write_addr), acc_write.data.eq(acc_write_data), acc_write.en.eq(acc_write_en),
        ]

        # the walk: position counters, the fire mask of the position being compared, pool windows
        walk = Signal(address)
        oy = Signal(range(max(l.out_height for l in convs)))
        ox = Signal(range(max(l.out_width for l in convs)))
        pooled = [l for l in convs if l.pool]
        pool_h = max([l.pool[0] for l in pooled], default=1)
        pool_w = max([l.pool[1] for l in pooled], default=1)
        dy, dx = Signal(range(pool_h)), Signal(range(pool_w))
        px = Signal(range(max([l.emit_width for l in pooled], default=1)))
        py = Signal(range(max([l.emit_height for l in pooled], default=1)))
        masks = Array(Signal(P, name=f"window_{index}")
                      for index in range(max([l.emit_width for l in pooled], default=1)))
        max_units = max(l.outputs for l in convs) + P
        walk_unit = Signal(range(max_units + 1))      # conv unit of (oy, ox, g * P)
        pool_unit = Signal(range(max_units + 1))      # pooled unit of (py, px, g * P)
        fire = Signal(P)
        for lane_index in range(P):
            m.d.comb += fire[lane_index].eq(real_lanes[lane_index]
                                            & (acc_read.data[lane_index * A:(lane_index + 1) * A].as_signed()
                                               >= thresholds[lane_index * A:(lane_index + 1) * A].as_signed()))
        # the emission the walk hands to CEMIT: its lanes, unit base and position
        emit_unit = Signal.like(walk_unit)
        emit_y, emit_x = Signal.like(oy), Signal.like(ox)
        walk_done = Signal()
        first_position = Signal()
        walk_base = Signal.like(walk_unit)      # this position's first unit: (oy, ox) * F + g * P
        m.d.comb += [first_position.eq((oy == 0) & (ox == 0)),
                     walk_base.eq(Mux(first_position, neuron_base, walk_unit))]

        def begin_walk():
            """Start comparing positions from (0, 0): position 0 is read this cycle."""
            m.d.comb += acc_read_addr.eq(0)
            m.d.sync += [walk.eq(0), oy.eq(0), ox.eq(0), dy.eq(0), dx.eq(0), px.eq(0), py.eq(0),
                         walk_done.eq(0)]
            m.next = "WALK"

        c.update(cur_valid=cur_valid, event_done=event_done, load=load, issue=issue, begin_walk=begin_walk,
                 cur_i=cur_i, cur_j=cur_j, cur_i_hi=cur_i_hi, cur_j_lo=cur_j_lo, cur_j_hi=cur_j_hi,
                 acc_read_addr=acc_read_addr, acc_write_addr=acc_write_addr, acc_write_data=acc_write_data,
                 acc_write_en=acc_write_en, walk=walk, oy=oy, ox=ox, dy=dy, dx=dx, px=px, py=py, masks=masks,
                 walk_unit=walk_unit, pool_unit=pool_unit, fire=fire, emit_unit=emit_unit, emit_y=emit_y,
                 emit_x=emit_x, walk_done=walk_done, walk_base=walk_base, first_position=first_position, drain=Signal(range(CONV_DRAIN + 1)))
        return c

    def _conv_states(self, m, plan, c, layer, layers, cycles, pointer, pointer_next, count, pending,
                     pending_after, lane, neuron_base, list_writes, counts, trace_beat, trace_layer,
                     finish_group):
        P = plan.lanes
        with m.State("CPASS"):           # one (event, reached position) per cycle
            m.d.sync += cycles.eq(cycles + 1)
            m.d.comb += c["issue"].eq(c["cur_valid"])
            with m.If(~c["cur_valid"] | c["event_done"]):
                with m.If(pointer == count):
                    m.d.sync += [c["cur_valid"].eq(0), c["drain"].eq(0)]
                    m.next = "DRAIN"
                with m.Else():
                    m.d.comb += [c["load"].eq(1), pointer_next.eq(pointer + 1)]
                    m.d.sync += c["cur_valid"].eq(1)
            with m.Elif(c["cur_j"] == c["cur_j_hi"]):
                m.d.sync += [c["cur_j"].eq(c["cur_j_lo"]), c["cur_i"].eq(c["cur_i"] + 1)]
            with m.Else():
                m.d.sync += c["cur_j"].eq(c["cur_j"] + 1)

        with m.State("DRAIN"):           # the last update reaches the accumulator memory
            m.d.sync += [cycles.eq(cycles + 1), c["drain"].eq(c["drain"] + 1)]
            with m.If(c["drain"] == CONV_DRAIN - 1):
                c["begin_walk"]()

        with m.State("WALK"):            # compare and clear one position; OR it into its pool window
            m.d.sync += cycles.eq(cycles + 1)
            walk, fire = c["walk"], c["fire"]
            emit = Signal(P)
            at_end = Signal()
            with m.Switch(layer):
                for plan_layer in layers:
                    if plan_layer.kind != "conv2d":
                        continue
                    with m.Case(plan_layer.index):
                        m.d.comb += at_end.eq((c["oy"] == plan_layer.out_height - 1)
                                              & (c["ox"] == plan_layer.out_width - 1))
            # the next position is read whatever this one does (its address must not wait for the
            # compare: a block RAM's output, the compare and the address would not fit one cycle);
            # a stalled trace re-reads this one in WSTALL
            m.d.comb += c["acc_read_addr"].eq(Mux(at_end, 0, walk + 1))
            accepted = Signal()
            with m.If(fire != 0):
                trace_beat(trace_layer, c["walk_base"], fire, accepted)
            with m.Else():
                m.d.comb += accepted.eq(1)
            with m.If(accepted):
                m.d.comb += [c["acc_write_addr"].eq(walk), c["acc_write_data"].eq(0), c["acc_write_en"].eq(1)]
                m.d.sync += walk.eq(walk + 1)
                with m.Switch(layer):
                    for plan_layer in layers:
                        if plan_layer.kind != "conv2d":
                            continue
                        with m.Case(plan_layer.index):
                            self._walk_step(m, plan_layer, c, fire, emit, neuron_base)
                # the compare decides only the next state: what the group's end sets up (addresses of
                # the next group or layer) waits for WEND
                with m.If(emit != 0):
                    m.d.sync += [pending.eq(emit), c["walk_done"].eq(at_end)]
                    m.next = "CEMIT"
                with m.Elif(at_end):
                    m.next = "WEND"
            with m.Else():
                m.next = "WSTALL"

        with m.State("WEND"):            # the group's walk is over
            m.d.sync += cycles.eq(cycles + 1)
            finish_group()

        with m.State("WSTALL"):          # the trace was not ready: read the position again
            m.d.sync += cycles.eq(cycles + 1)
            m.d.comb += c["acc_read_addr"].eq(c["walk"])
            m.next = "WALK"

        with m.State("CEMIT"):           # list one spike (after the pool) per cycle
            m.d.sync += cycles.eq(cycles + 1)
            m.d.comb += c["acc_read_addr"].eq(c["walk"])
            accepted = Signal()
            unit = c["emit_unit"] + lane
            with m.Switch(layer):
                for plan_layer, write, counter in zip(layers, list_writes[1:], counts[1:]):
                    if plan_layer.kind != "conv2d":
                        continue
                    with m.Case(plan_layer.index):
                        if plan_layer.pool:
                            trace_beat(plan.trace_layers[plan_layer.index][1], unit, 1, accepted)
                        else:
                            m.d.comb += accepted.eq(1)
                        consumer = layers[plan_layer.index + 1]
                        with m.If(accepted):
                            m.d.comb += [write.addr.eq(counter), write.en.eq(1)]
                            if consumer.kind == "conv2d":
                                m.d.comb += [write.data.y.eq(c["emit_y"]), write.data.x.eq(c["emit_x"]),
                                             write.data.c.eq(neuron_base + lane)]
                            else:
                                m.d.comb += write.data.index.eq(unit)
                            m.d.sync += counter.eq(counter + 1)
            with m.If(accepted):
                m.d.sync += pending.eq(pending_after)
                with m.If(pending_after == 0):
                    m.next = "WALK"
                    with m.If(c["walk_done"]):
                        m.next = "WEND"

    def _walk_step(self, m, plan_layer, c, fire, emit, neuron_base):
        """Advance the walk of ``plan_layer`` past the current position; what it lists goes to ``emit``."""
        oy, ox, walk_unit, pool_unit = c["oy"], c["ox"], c["walk_unit"], c["pool_unit"]
        F = plan_layer.filters
        first_position, base = c["first_position"], c["walk_base"]
        m.d.sync += walk_unit.eq(base + F)
        with m.If(ox == plan_layer.out_width - 1):
            m.d.sync += [ox.eq(0), oy.eq(oy + 1)]
        with m.Else():
            m.d.sync += ox.eq(ox + 1)
        if plan_layer.pool is None:
            m.d.comb += emit.eq(fire)
            m.d.sync += [c["emit_unit"].eq(base), c["emit_y"].eq(oy), c["emit_x"].eq(ox)]
            return
        ph, pw = plan_layer.pool
        dy, dx, px, py, masks = c["dy"], c["dx"], c["px"], c["py"], c["masks"]
        pooled_base = Mux(first_position, neuron_base, pool_unit)
        in_window = (oy < plan_layer.emit_height * ph) & (ox < plan_layer.emit_width * pw)
        window_end = in_window & (dy == ph - 1) & (dx == pw - 1)
        merged = masks[px] | fire
        with m.If(in_window):
            m.d.sync += masks[px].eq(Mux(window_end, 0, merged))
        with m.If(window_end):
            m.d.comb += emit.eq(merged)
            m.d.sync += [c["emit_unit"].eq(pooled_base), c["emit_y"].eq(py), c["emit_x"].eq(px),
                         pool_unit.eq(pooled_base + F)]
        with m.Elif(first_position):
            m.d.sync += pool_unit.eq(neuron_base)
        # window coordinates advance with the position
        with m.If(ox == plan_layer.out_width - 1):
            m.d.sync += [dx.eq(0), px.eq(0)]
            with m.If(dy == ph - 1):
                m.d.sync += [dy.eq(0), py.eq(py + 1)]
            with m.Else():
                m.d.sync += dy.eq(dy + 1)
        with m.Elif(dx == pw - 1):
            m.d.sync += [dx.eq(0), px.eq(px + 1)]
        with m.Else():
            m.d.sync += dx.eq(dx + 1)
