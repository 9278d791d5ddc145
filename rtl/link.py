"""Frame layer of the serial link: SLIP framing and CRC-32 in gateware.

:class:`FrameDecoder` turns received bytes into one verdict per frame and stores the payload as it
arrives; :class:`FrameEncoder` wraps a body byte stream into an escaped frame with its CRC. Their
reference model is :class:`hone.rtl.protocol.FrameParser` / :func:`hone.rtl.protocol.encode_frame`.
"""

from amaranth import Module, Mux, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from . import protocol
from .protocol import CHUNK_HEADER, CRC_BYTES, END, ESC, ESC_END, ESC_ESC, HEADER_BYTES, ErrorCode
from .uart import rx_layout

__all__ = ["FrameDecoder", "FrameEncoder", "frame_layout", "body_layout"]

STATUS_OK = 0

frame_layout = data.StructLayout({
    "status": unsigned(3),        # 0, or an ErrorCode
    "seq": unsigned(16),
    "type": unsigned(8),
    "length": unsigned(16),
    "slot": unsigned(8),          # the first three payload bytes: a chunk's slot and offset
    "offset": unsigned(16),
})

body_layout = data.StructLayout({"data": unsigned(8), "last": unsigned(1)})


class FrameDecoder(wiring.Component):
    """SLIP decoder and frame checker; always ready, so it can sit right behind a UART.

    Every run of bytes between two ENDs that is not empty yields one ``frames`` transfer, one clock
    after its closing END: ``status`` 0 when the length field matches and the CRC checks, else the
    :class:`~hone.rtl.protocol.ErrorCode` the board answers with. Payload bytes from the fourth on (a
    chunk's data) are written to ``store`` as they arrive, whatever the verdict: the consumer acts
    on them only after a good one. Counters saturate, so garbage of any length cannot wrap them.

    Parameters
    ----------
    max_payload : int
        Longest payload accepted; longer frames are answered ``LENGTH`` and stored no further.

    Members
    -------
    bytes : In(stream.Signature(rx_layout, always_ready=True))
        Received bytes, ``error`` marking a UART framing error.
    frames : Out(stream.Signature(frame_layout, always_ready=True))
        One verdict per frame.
    store_addr, store_data, store_en : Out
        Write port for chunk data: byte ``i`` of the payload goes to ``store_addr = i - 3``.
    """

    def __init__(self, max_payload):
        if max_payload < CHUNK_HEADER:
            raise ValueError(f"max_payload must be at least {CHUNK_HEADER}, got {max_payload}")
        self._max_payload = max_payload
        super().__init__({
            "bytes": In(stream.Signature(rx_layout, always_ready=True)),
            "frames": Out(stream.Signature(frame_layout, always_ready=True)),
            "store_addr": Out(range(max(max_payload - CHUNK_HEADER, 1))),
            "store_data": Out(8),
            "store_en": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.crc = crc = protocol.CRC.create()
        limit = HEADER_BYTES + self._max_payload + CRC_BYTES + 1
        size = Signal(range(limit + 1))          # body bytes so far, saturating at limit
        escaped = Signal()
        framing = Signal()
        header = Signal(8 * HEADER_BYTES)
        arg = Signal(8 * CHUNK_HEADER)
        seq, type, length = header[0:16], header[16:24], header[24:40]

        m.d.sync += self.frames.valid.eq(0)
        m.d.comb += crc.data.eq(0)
        byte = Signal(8)
        m.d.comb += byte.eq(self.bytes.payload.data)
        body_byte = Signal(8)
        take = Signal()

        with m.If(self.bytes.valid):
            with m.If(self.bytes.payload.error):
                m.d.sync += framing.eq(1)
            with m.Elif(byte == END):
                with m.If((size != 0) | framing):
                    status = Signal(3)
                    with m.If(framing):
                        m.d.comb += status.eq(ErrorCode.FRAMING)
                    with m.Elif((size < HEADER_BYTES + CRC_BYTES) | (length > self._max_payload) |
                                (size != length + HEADER_BYTES + CRC_BYTES)):
                        m.d.comb += status.eq(ErrorCode.LENGTH)
                    with m.Elif(~crc.match_detected):
                        m.d.comb += status.eq(ErrorCode.CRC)
                    with m.Else():
                        m.d.comb += status.eq(STATUS_OK)
                    m.d.sync += [
                        self.frames.valid.eq(1),
                        self.frames.payload.status.eq(status),
                        self.frames.payload.seq.eq(Mux(size != 0, seq, 0)),
                        self.frames.payload.type.eq(type),
                        self.frames.payload.length.eq(length),
                        self.frames.payload.slot.eq(arg[0:8]),
                        self.frames.payload.offset.eq(arg[8:24]),
                    ]
                m.d.sync += [size.eq(0), escaped.eq(0), framing.eq(0), header.eq(0)]
                m.d.comb += crc.start.eq(1)
            with m.Elif(escaped):
                m.d.sync += escaped.eq(0)
                with m.If(byte == ESC_END):
                    m.d.comb += [body_byte.eq(END), take.eq(1)]
                with m.Elif(byte == ESC_ESC):
                    m.d.comb += [body_byte.eq(ESC), take.eq(1)]
                with m.Else():
                    m.d.sync += framing.eq(1)
            with m.Elif(byte == ESC):
                m.d.sync += escaped.eq(1)
            with m.Else():
                m.d.comb += [body_byte.eq(byte), take.eq(1)]

        with m.If(take):
            m.d.comb += [crc.data.eq(body_byte), crc.valid.eq(1)]
            with m.If(size != limit):
                m.d.sync += size.eq(size + 1)
            for index in range(HEADER_BYTES):
                with m.If(size == index):
                    m.d.sync += header[8 * index:8 * index + 8].eq(body_byte)
            for index in range(CHUNK_HEADER):
                with m.If(size == HEADER_BYTES + index):
                    m.d.sync += arg[8 * index:8 * index + 8].eq(body_byte)
            first = HEADER_BYTES + CHUNK_HEADER
            with m.If((size >= first) & (size < first + self._max_payload - CHUNK_HEADER) &
                      (size < length + HEADER_BYTES)):
                m.d.comb += [self.store_addr.eq(size - first), self.store_data.eq(body_byte),
                             self.store_en.eq(1)]
        return m


class FrameEncoder(wiring.Component):
    """Wraps a frame body (header and payload, ``last`` on its final byte) into ``END``, the
    SLIP-escaped body and CRC, and ``END``.

    Members
    -------
    body : In(stream.Signature(body_layout))
        The body bytes of one frame after another.
    bytes : Out(stream.Signature(8))
        Wire bytes, for a :class:`~hone.rtl.uart.UARTTransmitter`.
    """

    def __init__(self):
        super().__init__({
            "body": In(stream.Signature(body_layout)),
            "bytes": Out(stream.Signature(8)),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.crc = crc = protocol.CRC.create()
        current = Signal(8)
        last = Signal()
        crc_index = Signal(range(CRC_BYTES + 1))
        in_crc = Signal()
        special = Signal()
        m.d.comb += special.eq((current == END) | (current == ESC))

        def next_byte():
            with m.If(in_crc & (crc_index == CRC_BYTES)):
                m.next = "TAIL"
            with m.Elif(~in_crc & last):
                m.d.sync += [in_crc.eq(1), crc_index.eq(0)]
                m.next = "FETCH"
            with m.Else():
                m.next = "FETCH"

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.body.valid):
                    m.d.comb += [self.bytes.valid.eq(1), self.bytes.payload.eq(END)]
                    with m.If(self.bytes.ready):
                        m.d.comb += crc.start.eq(1)
                        m.d.sync += [in_crc.eq(0), last.eq(0)]
                        m.next = "FETCH"
            with m.State("FETCH"):
                with m.If(in_crc):
                    with m.Switch(crc_index):
                        for index in range(CRC_BYTES):
                            with m.Case(index):
                                m.d.sync += current.eq(crc.crc[8 * index:8 * index + 8])
                    m.d.sync += crc_index.eq(crc_index + 1)
                    m.next = "SEND"
                with m.Else():
                    m.d.comb += self.body.ready.eq(1)
                    with m.If(self.body.valid):
                        m.d.comb += [crc.data.eq(self.body.payload.data), crc.valid.eq(1)]
                        m.d.sync += [current.eq(self.body.payload.data), last.eq(self.body.payload.last)]
                        m.next = "SEND"
            with m.State("SEND"):
                m.d.comb += [self.bytes.valid.eq(1), self.bytes.payload.eq(Mux(special, ESC, current))]
                with m.If(self.bytes.ready):
                    with m.If(special):
                        m.next = "ESCAPED"
                    with m.Else():
                        next_byte()
            with m.State("ESCAPED"):
                m.d.comb += [self.bytes.valid.eq(1),
                             self.bytes.payload.eq(Mux(current == END, ESC_END, ESC_ESC))]
                with m.If(self.bytes.ready):
                    next_byte()
            with m.State("TAIL"):
                m.d.comb += [self.bytes.valid.eq(1), self.bytes.payload.eq(END)]
                with m.If(self.bytes.ready):
                    m.next = "IDLE"
        return m
