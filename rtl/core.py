"""``NetworkCore``: a whole network on one shared :class:`~hone.rtl.neuron.NeuronArray`, event-driven.

Every layer reads an *event list* (the indices of its active inputs, written by the layer below) and
writes the next one, so a layer costs one cycle per active input per group of ``P`` neurons, never one
per fan-in. Pixels arrive as ``K``-bit integers; only non-zero pixels are listed, and each is issued
once: the lanes add ``w * q``, all of the pixel's bit-planes in one cycle. The output layer's spikes
vote through the N-hot key ROM as they are emitted, keeping a running arg-max that breaks ties
towards the lowest class.
The exact cycle count is :func:`hone.rtl.cycles.inference_cycles`.
"""

from amaranth import C, Array, Cat, Module, Mux, Signal, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from .neuron import NeuronArray
from .plan import CorePlan, _bits_for

__all__ = ["NetworkCore"]


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


class NetworkCore(wiring.Component):
    """Inference engine for one network file.

    Parameters
    ----------
    network : hone.training.netfile.Network
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
        One transfer per image: ``label`` (the decoded class) and ``cycles`` (the inference's cycles).
    trace : Out(stream.Signature(trace_layout))
        Present with ``trace=True``: one transfer per spike, ``layer`` and ``neuron`` index, in order;
        an image's spikes all precede its result. The core waits while it is not ready.
    """

    def __init__(self, network, *, lanes, trace=False):
        self._plan = CorePlan(network, lanes=lanes)
        self._trace = bool(trace)
        plan = self._plan
        self.result_layout = data.StructLayout({
            "label": unsigned(_bits_for(plan.classes - 1)),
            "cycles": unsigned(plan.cycle_bits),
        })
        self.trace_layout = data.StructLayout({
            "layer": unsigned(_bits_for(len(plan.layers) - 1)),
            "neuron": unsigned(_bits_for(max(layer.outputs for layer in plan.layers) - 1)),
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

        m.submodules.neurons = neurons = NeuronArray(
            lanes=P, weight_bits=B, accumulator_bits=A, value_bits=K)

        # -- memories: event lists (RAM), weights and thresholds (ROM), the N-hot key (ROM)
        index_bits = _bits_for(max(plan.list_depths()) - 1)
        entry0 = data.StructLayout({"index": unsigned(index_bits), "bits": unsigned(K)})
        list_reads, list_writes = [], []
        for index, depth in enumerate(plan.list_depths()):
            shape = entry0 if index == 0 else unsigned(index_bits)
            if index == 0:
                depth *= 2        # two banks: the next image loads while this one runs
            m.submodules[f"events_{index}"] = events = memory.Memory(shape=shape, depth=depth, init=[])
            list_reads.append(events.read_port())
            list_writes.append(events.write_port())
        weight_reads, threshold_reads = [], []
        for layer in layers:
            m.submodules[f"weights_{layer.index}"] = rom = memory.Memory(
                shape=unsigned(P * B), depth=layer.groups * layer.inputs, init=layer.weight_words)
            weight_reads.append(rom.read_port())
            m.submodules[f"thresholds_{layer.index}"] = rom = memory.Memory(
                shape=unsigned(P * A), depth=layer.groups, init=layer.threshold_words)
            threshold_reads.append(rom.read_port())
        m.submodules.key = key = memory.Memory(
            shape=range(plan.classes + 1), depth=len(plan.unit_class), init=plan.unit_class)
        key_read = key.read_port(domain="comb")

        # -- sequencer state
        layer = Signal(range(max(len(layers), 2)))
        group = Signal(range(max(layer.groups for layer in layers)))
        group_next = Signal.like(group)
        pointer = Signal(range(max(plan.list_depths()) + 1))
        pointer_next = Signal.like(pointer)
        counts = [Signal(range(depth + 1), name=f"count_{index}")
                  for index, depth in enumerate(plan.list_depths())]
        weight_base = Signal(range(max(l.groups * l.inputs for l in layers) + 1))
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
        staged_weights = Signal(P * B)
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
        event_index = Signal(index_bits)
        event_bits = Signal(K)
        count = Signal.like(pointer)
        last_group = Signal()
        fan_in = Signal.like(weight_base)
        weights = Signal(P * B)
        thresholds = Signal(P * A)
        with m.Switch(layer):
            for plan_layer, read, w_read, t_read, layer_count in zip(
                    layers, list_reads, weight_reads, threshold_reads, counts):
                with m.Case(plan_layer.index):
                    if plan_layer.index == 0:
                        m.d.comb += [event_index.eq(read.data.index), event_bits.eq(read.data.bits)]
                    else:
                        m.d.comb += [event_index.eq(read.data), event_bits.eq(1)]
                    m.d.comb += [
                        count.eq(layer_count),
                        last_group.eq(group == plan_layer.groups - 1),
                        fan_in.eq(plan_layer.inputs),
                        weights.eq(w_read.data),
                        thresholds.eq(t_read.data),
                    ]
        # the event list's output is registered before it addresses the weight ROM (a block RAM's
        # clock-to-output, the layer select and the address adder would not fit one cycle)
        listed = Signal()
        listed_index = Signal.like(event_index)
        listed_value = Signal(K)
        m.d.sync += [listed.eq(0), issued.eq(listed), issued_value.eq(listed_value)]
        for read in weight_reads:
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

        def start_group(events):
            m.d.comb += pointer_next.eq(0)
            with m.If(events == 0):
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

        # -- loading, into whichever bank is free (the other may be running)
        m.d.comb += self.pixels.ready.eq(~bank_full[load_bank])
        with m.If(self.pixels.valid & self.pixels.ready):
            with m.If(self.pixels.payload != 0):
                m.d.comb += [
                    list_writes[0].addr.eq(bank_count[load_bank] + Mux(load_bank, plan.input_size, 0)),
                    list_writes[0].data.index.eq(pixel),
                    list_writes[0].data.bits.eq(self.pixels.payload),
                    list_writes[0].en.eq(1),
                ]
                m.d.sync += bank_count[load_bank].eq(bank_count[load_bank] + 1)
            with m.If(pixel == plan.input_size - 1):
                m.d.sync += [pixel.eq(0), bank_full[load_bank].eq(1), load_bank.eq(~load_bank)]
            with m.Else():
                m.d.sync += pixel.eq(pixel + 1)

        with m.FSM(init="IDLE"):
            with m.State("IDLE"):
                with m.If(bank_full[run_bank]):
                    m.next = "START"

            with m.State("START"):
                m.d.sync += cycles.eq(cycles + 1)
                start_group(count)

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
                m.d.sync += [cycles.eq(cycles + 1), pending.eq(neurons.fire)]
                m.d.comb += neurons.clear.eq(1)
                with m.If(neurons.fire == 0):
                    finish_group()
                with m.Else():
                    m.next = "EMIT"

            with m.State("EMIT"):
                m.d.sync += cycles.eq(cycles + 1)
                accepted = Signal()
                if self._trace:
                    m.d.comb += [
                        self.trace.valid.eq(1),
                        self.trace.payload.layer.eq(layer),
                        self.trace.payload.neuron.eq(neuron),
                        accepted.eq(self.trace.ready),
                    ]
                else:
                    m.d.comb += accepted.eq(1)
                with m.If(accepted):
                    for index, write in enumerate(list_writes[1:]):
                        with m.If(layer == index):
                            m.d.comb += [write.addr.eq(counts[index + 1]), write.data.eq(neuron),
                                         write.en.eq(1)]
                            m.d.sync += counts[index + 1].eq(counts[index + 1] + 1)
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
