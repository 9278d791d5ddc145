"""The serial link protocol (version 3): constants, field tables and the software reference model.

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
from hone.network.errors import HoneError

__all__ = [
    "VERSION", "END", "ESC", "ESC_END", "ESC_ESC", "HEADER_BYTES", "CRC_BYTES", "FRAME_OVERHEAD",
    "CHUNK_HEADER", "MAX_INPUT_BITS", "CRC", "FrameType", "ErrorCode", "INFO_FIELDS", "Frame", "BadFrame",
    "FrameParser", "encode_frame", "slip_encode", "frame_bytes", "crc32", "ProtocolError", "BoardInfo", "Result",
    "parse_info", "info_payload", "result_fields", "parse_result", "chunk_payload", "pack_image",
    "unpack_image", "image_bytes", "line_rate", "Encoding", "zero_run_encode", "zero_run_decode",
    "EncodingError", "predictive_encode", "predictive_decode", "image_row_bytes", "image_request", "request_frame_bytes",
]

VERSION = 3

END, ESC, ESC_END, ESC_ESC = 0xC0, 0xDB, 0xDC, 0xDD
HEADER_BYTES = 5          # seq (u16), type, length (u16)
CRC_BYTES = 4
FRAME_OVERHEAD = 2 + HEADER_BYTES + CRC_BYTES   # two ENDs, header, CRC: the bytes of an empty frame
CHUNK_HEADER = 3          # LOAD / INFER payload: slot u8, offset u16, then the data
MAX_INPUT_BITS = 16       # pixels of 1..16 bits travel packed (pack_image)

CRC = crc.catalog.CRC32_ISO_HDLC(data_width=8)


class ProtocolError(HoneError, ValueError):
    """A payload does not match the protocol's layout."""


class FrameType(enum.IntEnum):
    """Requests (host to board) have the top bit clear; replies set it."""
    INFO = 0x01        # no payload
    LOAD = 0x02        # slot u8, offset u16, data: write an image chunk; answered by ACK
    INFER = 0x03       # slot u8, offset u16, data (may be empty): write, then run the slot; RESULT
    LOAD_ZR = 0x04     # LOAD with the data zero-run encoded (zero_run_encode); offset counts decoded bytes
    INFER_ZR = 0x05    # INFER with the data zero-run encoded
    LOAD_PR = 0x06     # LOAD with the data predictively coded (predictive_encode); offset counts decoded bytes
    INFER_PR = 0x07    # INFER with the data predictively coded
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
    ENCODING = 7       # encoded image data (zero-run, predictive) that is not valid or decodes past the slot


class Encoding(enum.IntFlag):
    """Image encodings a board decodes, announced in INFO's ``encodings``."""
    ZERO_RUN = 1       # LOAD_ZR / INFER_ZR (zero_run_encode), version 2
    PREDICTIVE = 2     # LOAD_PR / INFER_PR (predictive_encode), version 3


# name, bytes (little-endian unsigned); the board's reply to INFO, in order
INFO_FIELDS = (
    ("version", 1), ("input_bits", 1), ("slots", 1), ("lanes", 2), ("inputs", 4), ("classes", 2),
    ("outputs", 2), ("max_chunk", 2), ("clock_hz", 4), ("baud", 4), ("encodings", 1), ("row_bytes", 2),
    ("network_sha256", 32),
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
    row_bytes: int          # packed bytes of one image row (0: no row prediction), for predictive_encode
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


# -- predictive image encoding (version 3) ---------------------------------------------------------

PR_HEADER = 3      # predictive data: count u16 (decoded bytes), params u8 (k | run_k << 4), then the bits
PR_PARAM_MAX = 7   # k and run_k are 0..7
PR_Q_MAX = 255     # the longest unary part of a run length; a value's is 255 >> k (values are 0..255)


class EncodingError(ProtocolError):
    """Encoded image data the board answers ``ERROR ENCODING``; ``decoded``: the bytes it wrote into
    the slot (from the chunk's offset on) before it found the fault."""

    def __init__(self, message, decoded=b""):
        super().__init__(message)
        self.decoded = bytes(decoded)


def image_row_bytes(shape, bits):
    """The packed bytes of one image row of ``shape`` ``(height, width, channels)`` at ``bits`` bits
    a pixel: the distance to the byte above for :func:`predictive_encode`; 0 (left neighbours only)
    when a row is not a whole number of bytes or the image is one row."""
    shape = tuple(shape)
    if len(shape) != 3 or shape[0] < 2 or (shape[1] * shape[2] * bits) % 8:
        return 0
    return min(shape[1] * shape[2] * bits // 8, 0xFFFF)


def _med(a, b, c):
    """The median edge detector of LOCO-I / JPEG-LS: min(a, b) above an edge, max(a, b) below one, else
    the plane through a, b and c."""
    low, high = np.minimum(a, b), np.maximum(a, b)
    return np.where(c >= high, low, np.where(c <= low, high, a + b - c))


def _predictive_tokens(data, row_bytes):
    """The token stream of :func:`predictive_encode`, in stream order: ``(values, is_run)``. Runs of
    zero bytes (started where the left and upper neighbours are 0) are one run-length token and, unless
    the run ends the data, one token ``x - 1`` for the nonzero byte ending it; any other byte is one
    token, its zigzagged residual against the MED prediction. One loop step per run."""
    x = np.frombuffer(bytes(data), dtype=np.uint8).astype(np.int64)
    n = len(x)
    R = row_bytes
    padded = np.concatenate([np.zeros(R + 1, dtype=np.int64), x])
    a = padded[R:R + n]                                   # x[i - 1]
    b = padded[1:1 + n] if R else np.zeros(n, np.int64)   # x[i - R]
    c = padded[0:n] if R else np.zeros(n, np.int64)       # x[i - R - 1]
    residual = (x - _med(a, b, c)) & 0xFF
    residual = np.where(residual >= 128, residual - 256, residual)
    zigzag = np.where(residual >= 0, 2 * residual, -2 * residual - 1)
    # zeros[i]: zero bytes from i on
    nonzero = np.flatnonzero(np.concatenate([x, [1]]))
    zeros = nonzero[np.searchsorted(nonzero, np.arange(n))] - np.arange(n)
    starts = np.flatnonzero((a == 0) & (b == 0))
    regular = np.ones(n, dtype=bool)
    run_positions, runs, end_positions = [], [], []
    i = 0
    while i < n:
        j = np.searchsorted(starts, i)
        if j == len(starts):
            break
        start = int(starts[j])
        end = start + int(zeros[start])
        regular[start:end + 1] = False
        run_positions.append(start)
        runs.append(end - start)
        if end < n:
            end_positions.append(end)
        i = end + 1
    order = np.concatenate([2 * np.flatnonzero(regular), 2 * np.array(run_positions, dtype=np.int64),
                            2 * np.array(end_positions, dtype=np.int64) + 1])
    values = np.concatenate([zigzag[regular], np.array(runs, dtype=np.int64),
                             x[np.array(end_positions, dtype=np.int64)] - 1])
    is_run = np.concatenate([np.zeros(regular.sum(), bool), np.ones(len(runs), bool),
                             np.zeros(len(end_positions), bool)])
    sort = np.argsort(order, kind="stable")
    return values[sort], is_run[sort]


def _rice_bits(values, k):
    """Bits of each value as a Rice code of parameter ``k``: unary ``value >> k``, a 0, ``k`` bits."""
    return (values >> k) + 1 + k


def predictive_encode(data, *, row_bytes, k=None, run_k=None):
    """Image bytes as a predictive code (LOCO-I / JPEG-LS style, lossless): ``count u16, params u8``
    (``k | run_k << 4``) and a bit stream, LSB first within bytes. Each byte is predicted from its
    left neighbour ``a``, the byte ``row_bytes`` back ``b`` and the one before that ``c`` (0 outside
    the data): where ``a == b == 0``, a run of zero bytes follows (its length as a Rice code of
    ``run_k``, then the byte ending it less 1 as a Rice code of ``k``); else the residual against the
    MED prediction, mod 256 and zigzagged (0, -1, 1, -2, ...), as a Rice code of ``k``. A Rice code of
    ``k``: ``v >> k`` one bits, a zero bit, the low ``k`` bits of ``v`` (LSB first). ``k`` and ``run_k``
    (0..7) default to those giving the fewest bits. :class:`ProtocolError` for data the code cannot
    carry (over 65,535 bytes, or a run too long for every ``run_k``). The reference model of the
    gateware's decoder (:class:`hone.rtl.board.BoardTop`)."""
    data = bytes(data)
    if len(data) > 0xFFFF:
        raise ProtocolError(f"predictive data of {len(data)} bytes exceeds the 65535-byte count field")
    if not 0 <= row_bytes <= 0xFFFF:
        raise ProtocolError(f"row_bytes must be 0..65535, got {row_bytes}")
    values, is_run = _predictive_tokens(data, row_bytes)
    ks = np.arange(PR_PARAM_MAX + 1)
    runs, others = values[is_run], values[~is_run]
    longest = runs.max(initial=0)
    valid = (longest >> ks) <= PR_Q_MAX
    if not valid.any():
        raise ProtocolError(f"a run of {longest} zero bytes is too long for the predictive code")
    if k is None:
        k = int(np.argmin(_rice_bits(others[None, :], ks[:, None]).sum(axis=1)))
    if run_k is None:
        costs = _rice_bits(runs[None, :], ks[:, None]).sum(axis=1)
        run_k = int(np.argmin(np.where(valid, costs, np.iinfo(np.int64).max)))
    if not (0 <= k <= PR_PARAM_MAX and 0 <= run_k <= PR_PARAM_MAX) or not valid[run_k]:
        raise ProtocolError(f"k and run_k must be 0..{PR_PARAM_MAX} and carry every run, got k={k} run_k={run_k}")
    width = np.where(is_run, run_k, k)
    q, r = values >> width, values & ((1 << width) - 1)
    lengths = q + 1 + width
    starts = np.cumsum(lengths) - lengths
    total = int(lengths.sum())
    edges = np.zeros(total + 1, dtype=np.int64)
    np.add.at(edges, starts, 1)
    np.add.at(edges, starts + q, -1)
    bits = (np.cumsum(edges)[:total] > 0).astype(np.uint8)
    first = np.repeat(starts + q + 1, width)
    within = np.arange(int(width.sum())) - np.repeat(np.cumsum(width) - width, width)
    bits[first + within] = (np.repeat(r, width) >> within) & 1
    stream = np.packbits(bits, bitorder="little").tobytes()
    return struct.pack("<HB", len(data), k | run_k << 4) + stream


def predictive_decode(encoded, *, row_bytes, limit=None):
    """Inverse of :func:`predictive_encode`, step by step as the board decodes (one bit at a time);
    :class:`EncodingError` (with the bytes written before it) where the board answers ``ENCODING``:
    data shorter than its header, ``count`` over ``limit``, bits that end before ``count`` bytes are
    decoded, a unary part longer than any valid value's, a run past ``count``, a run-ending byte of 0
    (``v == 255``), or whole bytes left over after the last bit used."""
    encoded = bytes(encoded)
    if len(encoded) < PR_HEADER:
        raise EncodingError(f"predictive data of {len(encoded)} bytes is shorter than its {PR_HEADER}-byte header")
    count, params = struct.unpack_from("<HB", encoded)
    k, run_k = params & 7, params >> 4 & 7
    if limit is not None and count > limit:
        raise EncodingError(f"predictive data decodes past {limit} bytes ({count})")
    stream = encoded[PR_HEADER:]
    out = bytearray()
    position = 0

    def bit():
        nonlocal position
        if position >= 8 * len(stream):
            raise EncodingError(f"predictive data ends after {len(out)} of {count} bytes", out)
        value = stream[position >> 3] >> (position & 7) & 1
        position += 1
        return value

    def rice(width, q_max):
        q = 0
        while bit():
            if q == q_max:
                raise EncodingError(f"predictive data has a unary part over {q_max} at byte {len(out)}", out)
            q += 1
        r = 0
        for index in range(width):
            r |= bit() << index
        return q << width | r

    R = row_bytes
    while len(out) < count:
        n = len(out)
        a = out[n - 1] if n >= 1 else 0
        b = out[n - R] if R and n >= R else 0
        c = out[n - R - 1] if R and n >= R + 1 else 0
        if a == 0 and b == 0:
            run = rice(run_k, PR_Q_MAX)
            if n + run > count:
                raise EncodingError(f"predictive data has a run past {count} bytes at byte {n}", out)
            out += bytes(run)
            if len(out) < count:
                value = rice(k, PR_Q_MAX >> k)
                if value >= 255:
                    raise EncodingError(f"predictive data ends a run with a zero byte at byte {len(out)}", out)
                out.append(value + 1)
        else:
            e = rice(k, PR_Q_MAX >> k)
            residual = e >> 1 if e % 2 == 0 else -(e + 1 >> 1)
            out.append((int(_med(a, b, c)) + residual) & 0xFF)
    if (position + 7) // 8 != len(stream):
        raise EncodingError(f"predictive data has {len(stream) - (position + 7) // 8} bytes after its last "
                            f"bit", out)
    return bytes(out)


def image_request(data, *, final, encodings, row_bytes=0):
    """``(type, data)`` to send image bytes ``data`` with: the shortest of LOAD (or INFER when
    ``final``) and the zero-run and predictive forms the board decodes (``encodings``; ``row_bytes``:
    its INFO's, for the predictive code)."""
    data = bytes(data)
    choices = [(len(data), FrameType.INFER if final else FrameType.LOAD, data)]
    if encodings & Encoding.ZERO_RUN:
        encoded = zero_run_encode(data)
        choices.append((len(encoded), FrameType.INFER_ZR if final else FrameType.LOAD_ZR, encoded))
    if encodings & Encoding.PREDICTIVE and data:
        try:
            encoded = predictive_encode(data, row_bytes=row_bytes)
        except ProtocolError:
            pass
        else:
            choices.append((len(encoded), FrameType.INFER_PR if final else FrameType.LOAD_PR, encoded))
    _, type, payload = min(choices, key=lambda choice: choice[0])
    return type, payload


def request_frame_bytes(data, *, encodings, row_bytes=0, slot=0, offset=0):
    """Bytes on the wire for one INFER frame carrying ``data`` (escapes and encoding included)."""
    type, payload = image_request(data, final=True, encodings=encodings, row_bytes=row_bytes)
    return len(encode_frame(0, type, chunk_payload(slot, offset, payload)))
