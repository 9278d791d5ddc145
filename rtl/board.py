"""``BoardTop``: a network on a UART, speaking the protocol of :mod:`hone.rtl.protocol`.

Data path: UART receiver -> :class:`~hone.rtl.link.FrameDecoder` (chunk data into a staging buffer) ->
dispatcher, which acts only on frames whose CRC checked: it copies the chunk into an image slot (one
byte per clock, always ahead of the next frame's bytes, so staging is never overwritten unread),
decoding zero runs on the way for LOAD_ZR / INFER_ZR (:func:`hone.rtl.protocol.zero_run_encode`) and the
predictive code for LOAD_PR / INFER_PR (:func:`hone.rtl.protocol.predictive_encode`, one bit per clock), and
acknowledges it (LOAD) or queues the slot for inference (INFER). A loader unpacks the slot's bytes
into pixels for :class:`~hone.rtl.core.NetworkCore`; the core's trace gives the output spikes. Replies
(INFO, ACK, ERROR, RESULT) are serialised from field tables into :class:`~hone.rtl.link.FrameEncoder`.

Nothing waits on the host: an ERROR is answered only while the reply queue is nearly empty (else
counted in ``replies_dropped``: garbage can never crowd out the replies to good frames), a full
inference queue answers BUSY; the host retries on either, or on its timeout.
"""

from amaranth import C, Cat, Module, Mux, Signal
from amaranth.lib import fifo, memory, wiring
from amaranth.lib.wiring import In, Out

from . import protocol
from .core import NetworkCore
from .link import STATUS_OK, FrameDecoder, FrameEncoder
from .plan import _bits_for
from .protocol import CHUNK_HEADER, INFO_FIELDS, ErrorCode, FrameType
from .uart import UARTReceiver, UARTTransmitter, divisor_for

__all__ = ["BoardTop", "link_figures", "loader_cycles"]

# control replies queued by the dispatcher
KIND_ACK, KIND_INFO, KIND_ERROR, KIND_RESULT = range(4)
REPLY_DEPTH = 16
ZR_SLACK = 8       # clocks of the copy engine beyond one per byte (start, read latency, finish)
ERROR_ROOM = 2     # an ERROR is queued only behind fewer replies than this, so errors can never crowd
                   # out the replies to good frames (those are never longer than their requests)


def link_figures(network, *, clock_hz, baud, slots):
    """What a board for ``network`` tells the host in INFO, apart from counters: one home for the
    numbers the gateware is built from and the simulation and host check against."""
    divisor = divisor_for(clock_hz, baud)
    if not 1 <= slots <= 255:
        raise ValueError(f"slots must be 1..255, got {slots}")
    inputs, bits = network.input.size, network.input.bits
    image = protocol.image_bytes(inputs, bits)
    # a chunk is copied out of staging in chunk + 3 clocks; the next data frame needs at least
    # 13 bytes (130 bit times) to arrive, so staging is free again before it could be committed
    max_chunk = max(1, min(image, 100 * divisor, 0xFFFF - CHUNK_HEADER))
    # zero-run decoding writes up to a whole image from a short chunk, one byte per clock; the next
    # frame's data reaches staging byte j no sooner than 8 + j bytes (80 + 10 j bit times) after the
    # verdict, so decoding stays ahead of it when an image takes fewer clocks than 80 bit times
    fast = image + ZR_SLACK <= 80 * divisor
    # the predictive decoder takes one clock per bit, one per decoded byte and one per run length (a
    # run takes a bit at least): it has read bit-stream byte j (staging byte 3 + j) within
    # 16 j + image + 21 clocks of the verdict, the next frame's data reaches it no sooner than
    # 110 + 10 j bit times after (8 clocks or more a bit), so the zero-run bound keeps it ahead too
    encodings = protocol.Encoding.ZERO_RUN | protocol.Encoding.PREDICTIVE if fast else protocol.Encoding(0)
    row = protocol.image_row_bytes(network.input.shape, bits) if fast else 0
    return {"divisor": divisor, "image_bytes": image, "max_chunk": max_chunk, "slots": slots,
            "inputs": inputs, "input_bits": bits, "clock_hz": int(round(clock_hz)), "baud": int(baud),
            "encodings": int(encodings), "row_bytes": row}


def loader_cycles(network):
    """Clocks from the loader taking an image's slot off the queue to the core taking its last pixel
    (the core counts none of them): 1 to take the slot, 2 until the first byte is buffered, then
    one pixel per clock."""
    return 3 + network.input.size


class BoardTop(wiring.Component):
    """The whole board: UART pins in and out.

    Parameters
    ----------
    network : hone.network.netfile.Network
    lanes : int
        Neuron units of the core.
    clock_hz, baud : int
        The clock the design runs at and the line rate.
    slots : int
        Image buffers the host may fill ahead of inference.

    Members
    -------
    rx : In(1)
        UART line from the host.
    tx : Out(1)
        UART line to the host.
    last_label : Out(range(classes))
        The class of the latest inference (for LEDs).
    slot_data : amaranth.lib.memory.MemoryData
        The image slots' bytes (slot ``s`` at ``s * image_bytes``), for tests to inspect.
    """

    def __init__(self, network, *, lanes, clock_hz, baud, slots=4):
        self._network = network
        self._lanes = lanes
        self.figures = link_figures(network, clock_hz=clock_hz, baud=baud, slots=slots)
        self.core = NetworkCore(network, lanes=lanes, trace=True)
        self.slot_data = memory.MemoryData(shape=8, depth=slots * self.figures["image_bytes"], init=[])
        super().__init__({"rx": In(1, init=1), "tx": Out(1, init=1),
                          "last_label": Out(self.core.result_layout["label"].shape)})

    def elaborate(self, platform):
        m = Module()
        fig = self.figures
        plan = self.core.plan
        S, image, max_chunk = fig["slots"], fig["image_bytes"], fig["max_chunk"]
        K, N = fig["input_bits"], fig["inputs"]
        outputs = plan.layers[-1].outputs

        m.submodules.receiver = receiver = UARTReceiver(fig["divisor"])
        m.submodules.transmitter = transmitter = UARTTransmitter(fig["divisor"])
        m.submodules.decoder = decoder = FrameDecoder(max_chunk + CHUNK_HEADER)
        m.submodules.encoder = encoder = FrameEncoder()
        m.submodules.core = core = self.core
        m.d.comb += [receiver.rx.eq(self.rx), self.tx.eq(transmitter.tx)]
        wiring.connect(m, receiver.bytes, decoder.bytes)
        wiring.connect(m, encoder.bytes, transmitter.bytes)

        m.submodules.staging = staging = memory.Memory(shape=8, depth=max_chunk, init=[])
        staging_write, staging_read = staging.write_port(), staging.read_port()
        m.d.comb += [staging_write.addr.eq(decoder.store_addr), staging_write.data.eq(decoder.store_data),
                     staging_write.en.eq(decoder.store_en)]
        m.submodules.slots = slots = memory.Memory(data=self.slot_data)
        slot_write, slot_read = slots.write_port(), slots.read_port()

        # -- counters, reported by INFO
        uptime = Signal(64)
        m.d.sync += uptime.eq(uptime + 1)
        counters = {name: Signal(32, name=name) for name in protocol.COUNTERS}

        # -- reply queue: kind, seq, error code
        seq_bits, code_bits = 16, 3
        m.submodules.replies = replies = fifo.SyncFIFOBuffered(width=2 + seq_bits + code_bits,
                                                               depth=REPLY_DEPTH)
        slot_bits = _bits_for(S - 1)
        m.submodules.queue = queue = fifo.SyncFIFOBuffered(width=seq_bits + slot_bits, depth=S)

        # two writers (dispatcher, copy engine), each with a one-entry holding register; frames
        # arrive far apart, so both drain long before they could be needed again
        holds = []
        for name in ("dispatch", "copy"):
            holds.append((Signal(name=f"{name}_pending"), Signal(2, name=f"{name}_kind"),
                          Signal(16, name=f"{name}_seq"), Signal(3, name=f"{name}_code")))
        write_done = Signal(2)
        for index, (pending, kind, seq, code) in enumerate(holds):
            first = pending
            for earlier in holds[:index]:
                first = first & ~earlier[0]
            with m.If(first):
                room = Mux(kind == KIND_ERROR, replies.level < ERROR_ROOM, replies.w_rdy)
                with m.If(room):
                    m.d.comb += [replies.w_en.eq(1), replies.w_data.eq(Cat(kind, seq, code))]
                with m.Else():
                    m.d.sync += counters["replies_dropped"].eq(counters["replies_dropped"] + 1)
                m.d.comb += write_done[index].eq(1)
        for index, (pending, *_rest) in enumerate(holds):
            with m.If(write_done[index]):
                m.d.sync += pending.eq(0)

        def reply(hold, kind, seq, code=0):
            pending, h_kind, h_seq, h_code = hold
            m.d.sync += [pending.eq(1), h_kind.eq(kind), h_seq.eq(seq), h_code.eq(code)]

        def error(code, seq):
            reply(holds[0], KIND_ERROR, seq, code)
            name = protocol.ERROR_COUNTERS[ErrorCode(code)]
            m.d.sync += counters[name].eq(counters[name] + 1)

        # -- dispatcher and copy engine
        copying = Signal()
        copy_index = Signal(range(max_chunk + 1))
        copy_count = Signal(range(max_chunk + 1))
        copy_base = Signal(range(S * image + 1))
        copy_seq = Signal(16)
        copy_slot = Signal(slot_bits)
        copy_infer = Signal()
        copy_zr = Signal()
        copy_pr = Signal()
        read_valid = Signal()
        write_addr = Signal(range(S * image + 1))

        copy_end = Signal(range(S * image + 1))
        chunk_types = [FrameType.LOAD, FrameType.INFER]
        if fig["encodings"] & protocol.Encoding.ZERO_RUN:
            chunk_types += [FrameType.LOAD_ZR, FrameType.INFER_ZR]
        if fig["encodings"] & protocol.Encoding.PREDICTIVE:
            chunk_types += [FrameType.LOAD_PR, FrameType.INFER_PR]
        frame = decoder.frames.payload
        data_length = Signal(17)
        m.d.comb += data_length.eq(frame.length - CHUNK_HEADER)
        with m.If(decoder.frames.valid):
            with m.If(frame.status != STATUS_OK):
                with m.Switch(frame.status):
                    for code in ErrorCode:
                        with m.Case(code):
                            error(code, frame.seq)
            with m.Else():
                m.d.sync += counters["frames"].eq(counters["frames"] + 1)
                with m.Switch(frame.type):
                    with m.Case(FrameType.INFO):
                        reply(holds[0], KIND_INFO, frame.seq)
                    with m.Case(*chunk_types):
                        is_zr = (frame.type == FrameType.LOAD_ZR) | (frame.type == FrameType.INFER_ZR)
                        is_pr = (frame.type == FrameType.LOAD_PR) | (frame.type == FrameType.INFER_PR)
                        is_infer = ((frame.type == FrameType.INFER) | (frame.type == FrameType.INFER_ZR) |
                                    (frame.type == FrameType.INFER_PR))
                        with m.If(frame.length < CHUNK_HEADER):
                            error(ErrorCode.LENGTH, frame.seq)
                        # encoded data is checked against the slot as it decodes
                        with m.Elif((frame.slot >= S) |
                                    (frame.offset + Mux(is_zr | is_pr, 0, data_length) > image)):
                            error(ErrorCode.ADDRESS, frame.seq)
                        with m.Elif(copying | (is_infer & ~queue.w_rdy)):
                            error(ErrorCode.BUSY, frame.seq)
                        with m.Else():
                            m.d.sync += [
                                copying.eq(1), copy_index.eq(0), copy_count.eq(data_length),
                                copy_base.eq(frame.slot * image + frame.offset),
                                copy_end.eq(frame.slot * image + image),
                                copy_seq.eq(frame.seq), copy_slot.eq(frame.slot),
                                copy_infer.eq(is_infer), copy_zr.eq(is_zr), copy_pr.eq(is_pr),
                            ]
                    with m.Default():
                        error(ErrorCode.TYPE, frame.seq)

        def copy_done():
            m.d.sync += copying.eq(0)
            with m.If(copy_infer):
                m.d.comb += [queue.w_en.eq(1), queue.w_data.eq(Cat(copy_seq, copy_slot))]
            with m.Else():
                reply(holds[1], KIND_ACK, copy_seq)

        # raw chunks: staging byte i to slot byte offset + i, one per clock
        m.d.comb += [slot_write.addr.eq(write_addr), slot_write.data.eq(staging_read.data),
                     slot_write.en.eq(read_valid)]
        m.d.sync += read_valid.eq(0)
        with m.If(copying & ~copy_zr & ~copy_pr):
            m.d.comb += staging_read.addr.eq(copy_index)
            m.d.sync += [read_valid.eq(copy_index < copy_count), write_addr.eq(copy_base + copy_index)]
            with m.If(copy_index < copy_count):
                m.d.sync += copy_index.eq(copy_index + 1)
            with m.Elif(~read_valid):
                copy_done()

        # zero-run chunks: a header byte (literals << 4 | zeros), its literals copied, then zeros
        # written, one slot byte per clock; the staging read port always shows byte copy_index
        literals = Signal(4)
        zeros = Signal(4)
        out_addr = Signal(range(S * image + 1))
        advance = Signal()
        m.d.comb += staging_read.addr.eq(Mux(copying & (copy_zr | copy_pr), copy_index + advance, copy_index))
        with m.If(advance):
            m.d.sync += copy_index.eq(copy_index + 1)

        def emit(data):
            with m.If(out_addr >= copy_end):
                zr_error()
            with m.Else():
                m.d.comb += [slot_write.addr.eq(out_addr), slot_write.data.eq(data), slot_write.en.eq(1)]
                m.d.sync += out_addr.eq(out_addr + 1)

        def fail():
            m.d.sync += [copying.eq(0), counters["errors_encoding"].eq(counters["errors_encoding"] + 1)]
            reply(holds[1], KIND_ERROR, copy_seq, ErrorCode.ENCODING)

        def zr_error():
            fail()
            m.next = "IDLE"

        with m.FSM(name="zero_runs"):
            with m.State("IDLE"):
                with m.If(copying & copy_zr):
                    m.d.sync += out_addr.eq(copy_base)
                    m.next = "HEADER"           # byte 0 is on the read port from the next clock
            with m.State("HEADER"):
                with m.If(copy_index == copy_count):
                    copy_done()
                    m.next = "IDLE"
                with m.Else():
                    m.d.comb += advance.eq(1)
                    m.d.sync += [literals.eq(staging_read.data[4:8]), zeros.eq(staging_read.data[0:4])]
                    with m.If(staging_read.data[4:8] != 0):
                        m.next = "LITERALS"
                    with m.Elif(staging_read.data[0:4] != 0):
                        m.next = "ZEROS"
            with m.State("LITERALS"):
                with m.If(copy_index == copy_count):          # the data ends inside the run
                    zr_error()
                with m.Else():
                    emit(staging_read.data)
                    with m.If(out_addr < copy_end):
                        m.d.comb += advance.eq(1)
                        m.d.sync += literals.eq(literals - 1)
                        with m.If((literals == 1) & (zeros != 0)):
                            m.next = "ZEROS"
                        with m.Elif(literals == 1):
                            m.next = "HEADER"
            with m.State("ZEROS"):
                emit(0)
                with m.If(out_addr < copy_end):
                    m.d.sync += zeros.eq(zeros - 1)
                    with m.If(zeros == 1):
                        m.next = "HEADER"

        if fig["encodings"] & protocol.Encoding.PREDICTIVE:
            self._predictive_decoder(m, fig, staging_read=staging_read, slot_write=slot_write, advance=advance,
                                     copying=copying, copy_pr=copy_pr, copy_index=copy_index,
                                     copy_count=copy_count, copy_base=copy_base, copy_end=copy_end,
                                     out_addr=out_addr, copy_done=copy_done, fail=fail)

        # -- loader: slot bytes -> K-bit pixels, one per clock (the next byte is read while the
        # buffered bits are handed over); images the core holds wait in `running` for their result
        m.submodules.running = running = fifo.SyncFIFOBuffered(width=seq_bits + slot_bits, depth=3)
        run_seq = Signal(16)
        run_slot = Signal(slot_bits)
        base = Signal(range(S * image + 1))
        loading = Signal()
        fetched = Signal(range(image + 1))     # bytes requested
        arrive = Signal()                      # the byte requested last clock is on the read port
        buffer_bits = K + 16
        bits = Signal(buffer_bits)
        have = Signal(range(buffer_bits + 1))
        emitted = Signal(range(N + 1))
        consume = Signal()
        after = Signal.like(have)
        shifted = Signal.like(bits)
        m.d.comb += [
            core.pixels.valid.eq(loading & (have >= K)),
            core.pixels.payload.eq(bits[:K]),
            consume.eq(core.pixels.valid & core.pixels.ready),
            after.eq(have - Mux(consume, K, 0)),
            shifted.eq(Mux(consume, bits >> K, bits)),
            slot_read.addr.eq(base + fetched),
        ]
        m.d.sync += arrive.eq(0)
        with m.If(arrive):
            m.d.sync += [bits.eq(shifted | (slot_read.data << after)), have.eq(after + 8)]
        with m.Else():
            m.d.sync += [bits.eq(shifted), have.eq(after)]
        with m.If(loading & (fetched < image) & (after + Mux(arrive, 16, 8) <= buffer_bits)):
            m.d.sync += [fetched.eq(fetched + 1), arrive.eq(1)]
        with m.If(consume):
            m.d.sync += emitted.eq(emitted + 1)
            with m.If(emitted == N - 1):
                m.d.sync += loading.eq(0)
        with m.FSM(name="loader"):
            with m.State("IDLE"):
                with m.If(queue.r_rdy & core.pixels.ready):
                    m.d.comb += queue.r_en.eq(1)
                    m.d.sync += [run_seq.eq(queue.r_data[:16]), run_slot.eq(queue.r_data[16:]),
                                 base.eq(queue.r_data[16:] * image), fetched.eq(0), have.eq(0),
                                 bits.eq(0), emitted.eq(0), loading.eq(1)]
                    m.next = "LOAD"
            with m.State("LOAD"):
                with m.If(consume & (emitted == N - 1)):
                    # the core runs it (or queues it behind the one it runs): next slot
                    m.d.comb += [running.w_en.eq(1), running.w_data.eq(Cat(run_seq, run_slot))]
                    m.next = "IDLE"

        # -- output spikes from the trace
        last_layer = plan.trace_layers[-1][-1]      # the output layer: dense, one spike per transfer
        spikes = Signal(outputs)
        m.d.comb += core.trace.ready.eq(1)
        with m.If(core.trace.valid & (core.trace.payload.layer == last_layer)):
            m.d.sync += spikes.eq(spikes | (C(1, 1) << core.trace.payload.neuron)[:outputs])

        # -- reply serialiser
        kind = Signal(2)
        seq = Signal(16)
        code = Signal(3)
        label = Signal(16)
        cycles = Signal(32)
        result_slot = Signal(8)
        result_spikes = Signal(outputs)
        snapshot = {name: Signal(32, name=f"snapshot_{name}") for name in protocol.COUNTERS}
        snapshot_uptime = Signal(64)

        constants = {
            "version": protocol.VERSION, "input_bits": K, "slots": S, "lanes": plan.lanes,
            "inputs": N, "classes": plan.classes, "outputs": outputs, "max_chunk": max_chunk,
            "clock_hz": fig["clock_hz"], "baud": fig["baud"], "encodings": fig["encodings"],
            "row_bytes": fig["row_bytes"],
            "network_sha256": int.from_bytes(bytes.fromhex(self._network.sha256), "little"),
        }
        live = dict(snapshot, uptime_cycles=snapshot_uptime)

        def field_bytes(value, width):
            if isinstance(value, int):
                return [C((value >> (8 * i)) & 0xFF, 8) for i in range(width)]
            return [value[8 * i:8 * i + 8] if 8 * i < len(value) else C(0, 8) for i in range(width)]

        def body(type, fields):
            length = sum(width for _, width, _ in fields)
            out = [seq[0:8], seq[8:16], C(type, 8), C(length & 0xFF, 8), C(length >> 8, 8)]
            for name, width, value in fields:
                out += field_bytes(value, width)
            return out

        tables = {
            KIND_ACK: body(FrameType.ACK, []),
            KIND_ERROR: body(FrameType.ERROR, [("code", 1, code)]),
            KIND_INFO: body(FrameType.INFO_REPLY, [
                (name, width, constants[name] if name in constants else live[name])
                for name, width in INFO_FIELDS]),
            KIND_RESULT: body(FrameType.RESULT, [
                (name, width, {"slot": result_slot, "label": label, "cycles": cycles,
                               "spikes": result_spikes}[name])
                for name, width in protocol.result_fields(outputs)]),
        }
        index = Signal(range(max(len(t) for t in tables.values()) + 1))
        entry = replies.r_data
        prefer_result = Signal()
        with m.FSM(name="serialiser"):
            with m.State("IDLE"):
                m.d.sync += index.eq(0)
                # take turns when both wait, so neither a flood of ERRORs nor results starves the other
                with m.If(core.result.valid & (prefer_result | ~replies.r_rdy)):
                    m.d.comb += core.result.ready.eq(1)
                    m.d.sync += self.last_label.eq(core.result.payload.label)
                    m.d.comb += running.r_en.eq(1)
                    m.d.sync += [kind.eq(KIND_RESULT), seq.eq(running.r_data[:16]),
                                 result_slot.eq(running.r_data[16:]),
                                 label.eq(core.result.payload.label),
                                 cycles.eq(core.result.payload.cycles), result_spikes.eq(spikes),
                                 spikes.eq(0), prefer_result.eq(0)]
                    m.next = "BODY"
                with m.Elif(replies.r_rdy):
                    m.d.comb += replies.r_en.eq(1)
                    m.d.sync += [kind.eq(entry[0:2]), seq.eq(entry[2:18]), code.eq(entry[18:21]),
                                 prefer_result.eq(1)]
                    m.d.sync += [snapshot[name].eq(counters[name]) for name in snapshot]
                    m.d.sync += snapshot_uptime.eq(uptime)
                    m.next = "BODY"
            with m.State("BODY"):
                m.d.comb += encoder.body.valid.eq(1)
                with m.Switch(kind):
                    for table_kind, table in tables.items():
                        with m.Case(table_kind):
                            with m.Switch(index):
                                for position, byte in enumerate(table):
                                    with m.Case(position):
                                        m.d.comb += encoder.body.payload.data.eq(byte)
                            m.d.comb += encoder.body.payload.last.eq(index == len(table) - 1)
                with m.If(encoder.body.ready):
                    m.d.sync += index.eq(index + 1)
                    with m.If(encoder.body.payload.last):
                        m.next = "IDLE"
        return m

    @staticmethod
    def _predictive_decoder(m, fig, *, staging_read, slot_write, advance, copying, copy_pr, copy_index,
                            copy_count, copy_base, copy_end, out_addr, copy_done, fail):
        """LOAD_PR / INFER_PR: the predictive code (:func:`hone.rtl.protocol.predictive_decode`, its
        reference model) from staging into the slot, one bit per clock, one clock per decoded byte
        and one per run length: at most ``5 + 2 bits + count`` clocks a frame. The staging read port shows byte ``copy_index``;
        ``advance`` moves it on."""
        R = fig["row_bytes"]
        count = Signal(16)
        k = Signal(3)
        run_k = Signal(3)
        n = Signal(16)              # bytes decoded
        bit_pos = Signal(3)         # of the next bit in staging byte copy_index
        q = Signal(8)               # unary part so far
        r = Signal(8)               # low bits so far
        j = Signal(3)               # low bits read
        run_left = Signal(15)
        ending = Signal()           # the next value ends a run of zeros
        # the bytes decoded last, newest first: a (the byte before), ..., b (row_bytes back), c; in
        # flip-flops (no memory block: row_bytes is small for an image the line bound admits)
        history = Signal(8 * (R + 1))
        left = history[0:8]
        upper = history[8 * (R - 1):8 * R] if R else C(0, 8)
        upper_left = history[8 * R:8 * R + 8] if R else C(0, 8)

        write = Signal()
        write_data = Signal(8)
        with m.If(write):
            m.d.comb += [slot_write.addr.eq(out_addr), slot_write.data.eq(write_data), slot_write.en.eq(1)]
            m.d.sync += [out_addr.eq(out_addr + 1), n.eq(n + 1), history.eq(Cat(write_data, history[:-8]))]

        run_mode = Signal()
        width = Signal(3)
        q_max = Signal(8)
        bit = Signal()
        have_bit = Signal()
        m.d.comb += [
            run_mode.eq(~ending & (left == 0) & (upper == 0)),
            width.eq(Mux(run_mode, run_k, k)),
            q_max.eq(Mux(run_mode, protocol.PR_Q_MAX, C(protocol.PR_Q_MAX, 8) >> k)),
            bit.eq(staging_read.data.bit_select(bit_pos, 1)),
            have_bit.eq(copy_index < copy_count),
        ]

        def take_bit():
            m.d.sync += bit_pos.eq(bit_pos + 1)
            with m.If(bit_pos == 7):
                m.d.comb += advance.eq(1)

        def error():
            fail()
            m.next = "IDLE"

        def token_done(low):
            """The token's last bit is in: a value goes on in APPLY, a run length in RUN. Both take
            it from registers the next clock: the staging memory's output then ends in a flip-flop
            (checking a run against ``count`` in the same clock kept the board under 45 MHz)."""
            m.d.sync += r.eq(low)
            with m.If(~run_mode):
                m.next = "APPLY"
            with m.Else():
                m.next = "RUN"

        def byte_done():
            with m.If(n + 1 == count):
                m.next = "FINISH"
            with m.Else():
                m.next = "UNARY"

        with m.FSM(name="predictive"):
            with m.State("IDLE"):
                with m.If(copying & copy_pr):
                    m.d.sync += out_addr.eq(copy_base)
                    m.next = "COUNT_LOW"        # byte 0 is on the read port from the next clock
            for state, following_state in (("COUNT_LOW", "COUNT_HIGH"), ("COUNT_HIGH", "PARAMS")):
                with m.State(state):
                    with m.If(~have_bit):
                        error()
                    with m.Else():
                        m.d.comb += advance.eq(1)
                        field = count[0:8] if state == "COUNT_LOW" else count[8:16]
                        m.d.sync += field.eq(staging_read.data)
                        m.next = following_state
            with m.State("PARAMS"):
                with m.If(~have_bit | (copy_base + count > copy_end)):
                    error()
                with m.Else():
                    m.d.comb += advance.eq(1)
                    m.d.sync += [k.eq(staging_read.data[0:3]), run_k.eq(staging_read.data[4:7]), n.eq(0),
                                 bit_pos.eq(0), q.eq(0), ending.eq(0), history.eq(0)]
                    with m.If(count == 0):
                        m.next = "FINISH"
                    with m.Else():
                        m.next = "UNARY"
            with m.State("UNARY"):
                with m.If(~have_bit):
                    error()
                with m.Elif(bit):
                    take_bit()
                    with m.If(q == q_max):
                        error()
                    with m.Else():
                        m.d.sync += q.eq(q + 1)
                with m.Else():
                    take_bit()
                    with m.If(width == 0):
                        token_done(0)
                    with m.Else():
                        m.d.sync += [r.eq(0), j.eq(0)]
                        m.next = "LOW"
            with m.State("LOW"):
                low = Signal(8)
                m.d.comb += low.eq(r | (bit << j))
                with m.If(~have_bit):
                    error()
                with m.Else():
                    take_bit()
                    with m.If(j == width - 1):
                        token_done(low)
                    with m.Else():
                        m.d.sync += [r.eq(low), j.eq(j + 1)]
            with m.State("RUN"):
                run = Signal(16)
                m.d.comb += run.eq((q << run_k) | r)
                m.d.sync += q.eq(0)
                with m.If(run == 0):
                    m.d.sync += ending.eq(1)
                    m.next = "UNARY"
                with m.Elif(n + run > count):
                    error()
                with m.Else():
                    m.d.sync += run_left.eq(run)
                    m.next = "ZEROS"
            with m.State("ZEROS"):
                m.d.comb += [write.eq(1), write_data.eq(0)]
                m.d.sync += run_left.eq(run_left - 1)
                with m.If(run_left == 1):
                    m.d.sync += ending.eq(1)
                    byte_done()
            with m.State("APPLY"):
                value = Signal(8)
                m.d.comb += value.eq((q << k) | r)
                m.d.sync += q.eq(0)
                with m.If(ending):
                    with m.If(value == 255):
                        error()
                    with m.Else():
                        m.d.comb += [write.eq(1), write_data.eq(value + 1)]
                        m.d.sync += ending.eq(0)
                        byte_done()
                with m.Else():
                    # MED prediction, plus the zigzagged residual (0, -1, 1, -2, ...) mod 256
                    a, b, c = left, upper, upper_left
                    low_ab, high_ab = Mux(a < b, a, b), Mux(a < b, b, a)
                    prediction = Signal(8)
                    m.d.comb += prediction.eq(Mux(c >= high_ab, low_ab, Mux(c <= low_ab, high_ab, a + b - c)))
                    half = Signal(8)
                    m.d.comb += half.eq(value >> 1)
                    residual = Mux(value[0], ~half, half)
                    m.d.comb += [write.eq(1), write_data.eq(prediction + residual)]
                    byte_done()
            with m.State("FINISH"):
                # every byte of the data used, and no more
                with m.If(copy_index + (bit_pos != 0) != copy_count):
                    error()
                with m.Else():
                    copy_done()
                    m.next = "IDLE"

