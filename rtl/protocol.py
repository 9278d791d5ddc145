"""The serial link protocol (version 2): constants, field tables and the software reference model.

One home for everything both ends must agree on. The gateware (:mod:`hone.rtl.link`, :mod:`hone.rtl.board`)
builds its frames from these tables; :class:`FrameParser` and :func:`encode_frame` are the
pure-Python model it is tested against, and what :mod:`sim` and :mod:`host` speak. The wire format is
specified in ``docs/link.md``.

A frame on the wire is ``END body END`` with SLIP escaping (RFC 1055) inside; the body is::

    seq u16 | type u8 | length u16 | payload (length bytes) | crc u32

little-endian, the CRC being CRC-32/ISO-HDLC (``amaranth.lib.crc.catalog.CRC32_ISO_HDLC``) over
``seq .. payload``.
"""

import dataclasses
import enum
import struct

import numpy as np
from amaranth.lib import crc

__all__ = [
    "VERSION", "END", "ESC", "ESC_END", "ESC_ESC", "HEADER_BYTES", "CRC_BYTES", "FRAME_OVERHEAD",
    "CHUNK_HEADER", "MAX_INPUT_BITS", "CRC", "FrameType", "ErrorCode", "INFO_FIELDS", "Frame", "BadFrame",
    "FrameParser", "encode_frame", "slip_encode", "frame_bytes", "crc32", "ProtocolError", "BoardInfo", "Result",
    "parse_info", "info_payload", "result_fields", "parse_result", "chunk_payload", "pack_image",
    "unpack_image", "image_bytes", "line_rate", "Encoding", "zero_run_encode", "zero_run_decode",
    "image_request", "request_frame_bytes",
]

VERSION = 2

END, ESC, ESC_END, ESC_ESC = 0xC0, 0xDB, 0xDC, 0xDD
HEADER_BYTES = 5          # seq (u16), type, length (u16)
CRC_BYTES = 4
FRAME_OVERHEAD = 2 + HEADER_BYTES + CRC_BYTES   # two ENDs, header, CRC: the bytes of an empty frame
CHUNK_HEADER = 3          # LOAD / INFER payload: slot u8, offset u16, then the data
MAX_INPUT_BITS = 16       # pixels of 1..16 bits travel packed (pack_image)

CRC = crc.catalog.CRC32_ISO_HDLC(data_width=8)


class ProtocolError(ValueError):
    """A payload does not match the protocol's layout."""


class FrameType(enum.IntEnum):
    """Requests (host to board) have the top bit clear; replies set it."""
    INFO = 0x01        # no payload
    LOAD = 0x02        # slot u8, offset u16, data: write an image chunk; answered by ACK
    INFER = 0x03       # slot u8, offset u16, data (may be empty): write, then run the slot; RESULT
    LOAD_ZR = 0x04     # LOAD with the data zero-run encoded (zero_run_encode); offset counts decoded bytes
    INFER_ZR = 0x05    # INFER with the data zero-run encoded
    INFO_REPLY = 0x81  # INFO_FIELDS
    ACK = 0x82         # no payload
    RESULT = 0x83      # result_fields(outputs)
    ERROR = 0x8F       # code u8


class ErrorCode(enum.IntEnum):
    CRC = 1            # the CRC does not match
    LENGTH = 2         # the length field disagrees with the frame, or the payload is too long / short
    TYPE = 3           # unknown frame type
    BUSY = 4           # the inference queue is full: nothing was written, send again later
    ADDRESS = 5        # slot or offset out of range
    FRAMING = 6        # a UART framing error (e.g. a break) or an invalid SLIP escape inside the frame
    ENCODING = 7       # zero-run data that ends inside a literal run or decodes past the image slot


class Encoding(enum.IntFlag):
    """Image encodings a board decodes, announced in INFO's ``encodings``."""
    ZERO_RUN = 1       # LOAD_ZR / INFER_ZR (zero_run_encode)


# name, bytes (little-endian unsigned); the board's reply to INFO, in order
INFO_FIELDS = (
    ("version", 1), ("input_bits", 1), ("slots", 1), ("lanes", 2), ("inputs", 4), ("classes", 2),
    ("outputs", 2), ("max_chunk", 2), ("clock_hz", 4), ("baud", 4), ("encodings", 1), ("network_sha256", 32),
    ("uptime_cycles", 8), ("frames", 4),
    ("errors_crc", 4), ("errors_length", 4), ("errors_type", 4), ("errors_busy", 4),
    ("errors_address", 4), ("errors_framing", 4), ("errors_encoding", 4), ("replies_dropped", 4),
)
COUNTERS = ("frames", "errors_crc", "errors_length", "errors_type", "errors_busy", "errors_address",
            "errors_framing", "errors_encoding", "replies_dropped")
ERROR_COUNTERS = {code: f"errors_{code.name.lower()}" for code in ErrorCode}


def result_fields(outputs):
    """The RESULT payload's fields for a network with ``outputs`` output units."""
    return (("slot", 1), ("label", 2), ("cycles", 4), ("spikes", (outputs + 7) // 8))


def crc32(data):
    return CRC.compute(bytes(data))


# -- frames -----------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Frame:
    seq: int
    type: int
    payload: bytes


@dataclasses.dataclass(frozen=True)
class BadFrame:
    """Bytes between two ENDs that are not a frame; ``seq`` from its first bytes, if there were any."""
    code: ErrorCode
    seq: int | None
    size: int


def frame_bytes(seq, type, payload=b""):
    """The unescaped body: header, payload, CRC."""
    payload = bytes(payload)
    if not 0 <= seq <= 0xFFFF:
        raise ProtocolError(f"seq must be 0..65535, got {seq}")
    if len(payload) > 0xFFFF:
        raise ProtocolError(f"payload of {len(payload)} bytes exceeds the 65535-byte length field")
    body = struct.pack("<HBH", seq, int(type), len(payload)) + payload
    return body + struct.pack("<I", crc32(body))


def encode_frame(seq, type, payload=b""):
    """A whole frame as sent on the wire: ``END``, the escaped body, ``END``."""
    return slip_encode(frame_bytes(seq, type, payload))


def slip_encode(body):
    """``END``, ``body`` SLIP-escaped, ``END``: any body, valid or not."""
    out = bytearray([END])
    for byte in bytes(body):
        if byte == END:
            out += bytes([ESC, ESC_END])
        elif byte == ESC:
            out += bytes([ESC, ESC_ESC])
        else:
            out.append(byte)
    out.append(END)
    return bytes(out)


class FrameParser:
    """Streaming decoder: feed it any bytes, get :class:`Frame` and :class:`BadFrame` back.

    The reference model of :class:`hone.rtl.link.FrameDecoder`: empty frames (two ENDs in a row) are
    skipped; anything else between ENDs is a frame or a :class:`BadFrame` with the code the board
    would answer. A body longer than ``max_body`` bytes is counted but not kept, so garbage without
    ENDs costs bounded memory.
    """

    def __init__(self, max_body=1 << 17):
        self.max_body = max_body
        self._body = bytearray()
        self._size = 0
        self._escaped = False
        self._framing = False

    def feed(self, data, errors=()):
        """Decode ``data``; ``errors`` are indices into it of bytes received with a framing error."""
        out = []
        errors = set(errors)
        for index, byte in enumerate(bytes(data)):
            if index in errors:
                self._framing = True
                continue
            if byte == END:
                if self._size or self._framing:
                    out.append(self._finish())
                continue
            if self._escaped:
                self._escaped = False
                if byte == ESC_END:
                    byte = END
                elif byte == ESC_ESC:
                    byte = ESC
                else:
                    self._framing = True
            elif byte == ESC:
                self._escaped = True
                continue
            if self._size < self.max_body:
                self._body.append(byte)
            self._size += 1
        return out

    def _finish(self):
        body, size, framing = bytes(self._body), self._size, self._framing
        self._body, self._size, self._escaped, self._framing = bytearray(), 0, False, False
        seq = int.from_bytes(body[:2], "little") if body else None
        if framing:
            return BadFrame(ErrorCode.FRAMING, seq, size)
        if size < HEADER_BYTES + CRC_BYTES:
            return BadFrame(ErrorCode.LENGTH, seq, size)
        seq, type, length = struct.unpack_from("<HBH", body)
        if size != HEADER_BYTES + length + CRC_BYTES:
            return BadFrame(ErrorCode.LENGTH, seq, size)
        (declared,) = struct.unpack_from("<I", body, size - CRC_BYTES)
        if crc32(body[:size - CRC_BYTES]) != declared:
            return BadFrame(ErrorCode.CRC, seq, size)
        return Frame(seq, type, body[HEADER_BYTES:size - CRC_BYTES])


# -- payloads ---------------------------------------------------------------------------------------

def _unpack_fields(fields, payload, what):
    size = sum(width for _, width in fields)
    if len(payload) != size:
        raise ProtocolError(f"{what} payload has {len(payload)} bytes, expected {size}")
    values, offset = {}, 0
    for name, width in fields:
        values[name] = int.from_bytes(payload[offset:offset + width], "little")
        offset += width
    return values


def _pack_fields(fields, values):
    return b"".join(int(values[name]).to_bytes(width, "little") for name, width in fields)


@dataclasses.dataclass(frozen=True)
class BoardInfo:
    """A board's answer to INFO: what it runs, and its counters at that moment."""
    version: int
    input_bits: int
    slots: int
    lanes: int
    inputs: int
    classes: int
    outputs: int
    max_chunk: int
    clock_hz: int
    baud: int
    encodings: int
    network_sha256: str
    uptime_cycles: int
    counters: dict

    @property
    def image_bytes(self):
        return image_bytes(self.inputs, self.input_bits)


def info_payload(**values):
    """The INFO reply's payload (``network_sha256`` as hex); the reference for the gateware's."""
    values = dict(values)
    values["network_sha256"] = int.from_bytes(bytes.fromhex(values["network_sha256"]), "little")
    return _pack_fields(INFO_FIELDS, values)


def parse_info(payload):
    values = _unpack_fields(INFO_FIELDS, payload, "INFO")
    values["network_sha256"] = values["network_sha256"].to_bytes(32, "little").hex()
    counters = {name: values.pop(name) for name in COUNTERS}
    if values["version"] != VERSION:
        raise ProtocolError(f"board speaks protocol version {values['version']}, this host speaks {VERSION}")
    return BoardInfo(**values, counters=counters)


@dataclasses.dataclass(frozen=True)
class Result:
    slot: int
    label: int
    cycles: int
    spikes: np.ndarray      # (outputs,) of 0/1: the output layer's spikes


def parse_result(payload, outputs):
    values = _unpack_fields(result_fields(outputs), payload, "RESULT")
    bits = np.array([(values["spikes"] >> unit) & 1 for unit in range(outputs)], dtype=np.uint8)
    return Result(values["slot"], values["label"], values["cycles"], bits)


def chunk_payload(slot, offset, data):
    """LOAD / INFER payload: ``data`` for bytes ``offset ..`` of image slot ``slot``."""
    if not 0 <= slot <= 0xFF or not 0 <= offset <= 0xFFFF:
        raise ProtocolError(f"slot must be 0..255 and offset 0..65535, got slot={slot} offset={offset}")
    return struct.pack("<BH", slot, offset) + bytes(data)


# -- images ---------------------------------------------------------------------------------------

def image_bytes(inputs, bits):
    return (inputs * bits + 7) // 8


def pack_image(pixels, bits):
    """``bits``-bit pixels (1..16) as a little-endian bit stream: pixel ``p`` at bits ``p*bits ..``
    (8-bit pixels are one byte each, 16-bit ones two bytes, low byte first)."""
    pixels = np.asarray(pixels, dtype=np.int64).reshape(-1)
    if not 1 <= bits <= MAX_INPUT_BITS:
        raise ProtocolError(f"input bits must be 1..{MAX_INPUT_BITS}, got {bits}")
    if pixels.size and (pixels.min() < 0 or pixels.max() >= 1 << bits):
        raise ProtocolError(f"pixels must be 0..{(1 << bits) - 1} for {bits}-bit input, got "
                            f"{pixels.min()}..{pixels.max()}")
    if bits == 8:
        return pixels.astype(np.uint8).tobytes()
    if bits == 16:
        return pixels.astype("<u2").tobytes()
    planes = ((pixels[:, None] >> np.arange(bits)) & 1).astype(np.uint8).reshape(-1)
    return np.packbits(planes, bitorder="little").tobytes()


def unpack_image(data, inputs, bits):
    """Inverse of :func:`pack_image`."""
    stream = np.unpackbits(np.frombuffer(bytes(data), dtype=np.uint8), bitorder="little")
    planes = stream[:inputs * bits].reshape(inputs, bits).astype(np.int64)
    return (planes << np.arange(bits)).sum(axis=1)


def line_rate(*, baud, image_bytes, outputs, up=None):
    """``(images/s, bytes up, bytes down)`` the line allows with one INFER frame per image: the baud
    over 10 bits per byte over the bytes of the busier direction (full duplex). ``up``: the bytes an
    image really takes on the wire (escapes and encoding included, e.g. a mean over a test set from
    :func:`request_frame_bytes`); default: a raw frame of ``image_bytes``, escapes aside."""
    if up is None:
        up = FRAME_OVERHEAD + CHUNK_HEADER + image_bytes
    down = FRAME_OVERHEAD + sum(width for _, width in result_fields(outputs))
    return baud / 10 / max(up, down), up, down


# -- zero-run image encoding ----------------------------------------------------------------------

ZR_MAX = 15        # literals or zeros one header byte can announce


def zero_run_encode(data):
    """Image bytes as zero runs: header bytes ``literals << 4 | zeros`` (each 0..15), each followed by
    its ``literals`` bytes; the decoder copies those, then writes ``zeros`` zero bytes. Longer runs
    take more headers. The reference model of the gateware's decoder (:class:`hone.rtl.board.BoardTop`)."""
    data = bytes(data)
    out = bytearray()
    i, n = 0, len(data)
    while i < n:
        start = i
        while i < n and data[i] != 0 and i - start < ZR_MAX:
            i += 1
        literals = data[start:i]
        zeros = 0
        if i - start < ZR_MAX or i == n or data[i] == 0:
            while i < n and data[i] == 0 and zeros < ZR_MAX:
                i += 1
                zeros += 1
        out.append(len(literals) << 4 | zeros)
        out += literals
    return bytes(out)


def zero_run_decode(encoded, limit=None):
    """Inverse of :func:`zero_run_encode`; :class:`ProtocolError` for data that ends inside a literal
    run or (with ``limit``) decodes to more than ``limit`` bytes, as the board answers ``ENCODING``."""
    encoded = bytes(encoded)
    out = bytearray()
    i = 0
    while i < len(encoded):
        header = encoded[i]
        literals, zeros = header >> 4, header & 0xF
        if i + 1 + literals > len(encoded):
            raise ProtocolError(f"zero-run data ends inside a literal run at byte {i}")
        out += encoded[i + 1:i + 1 + literals] + bytes(zeros)
        i += 1 + literals
        if limit is not None and len(out) > limit:
            raise ProtocolError(f"zero-run data decodes past {limit} bytes")
    return bytes(out)


def image_request(data, *, final, encodings):
    """``(type, data)`` to send image bytes ``data`` with: LOAD (or INFER when ``final``), or their
    zero-run forms when the board decodes them and they are shorter (else the raw frame)."""
    if encodings & Encoding.ZERO_RUN:
        encoded = zero_run_encode(data)
        if len(encoded) < len(data):
            return (FrameType.INFER_ZR if final else FrameType.LOAD_ZR), encoded
    return (FrameType.INFER if final else FrameType.LOAD), bytes(data)


def request_frame_bytes(data, *, encodings, slot=0, offset=0):
    """Bytes on the wire for one INFER frame carrying ``data`` (escapes and encoding included)."""
    type, payload = image_request(data, final=True, encodings=encodings)
    return len(encode_frame(0, type, chunk_payload(slot, offset, payload)))
