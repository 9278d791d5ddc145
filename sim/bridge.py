"""cocotb tests on ``hone_board_tb`` (see :mod:`hone.sim.board`), configured by ``HONE_BOARD_CONFIG``.

``serve``: bridge the simulated serial line to a pseudo-terminal until the parent process goes away
or the stop file appears, with optional fault injection (bit flips, dropped and duplicated bytes).
A host that opens the pty at another standard baud rate than the board's gets what a UART at its
rate would make of the line (:func:`retime`), both ways, as on a real cable.
``garbage_is_answered``: random garbage, truncated and corrupted frames and line breaks, each followed
by a valid frame; every valid frame must get its reply.
"""

import errno
import json
import os
import pathlib
import random
import select
import time
import tty

import cocotb
import numpy as np
from cocotb.triggers import RisingEdge, Timer
from cocotb.utils import get_sim_time

from hone.rtl import protocol
from hone.rtl.protocol import FrameType

from .board import BATCH, FIFO_DEPTH

__all__ = ["LineFaults", "retime", "pty_baud", "serve", "garbage_is_answered"]


def retime(data, sent_baud, read_baud):
    """What an 8N1 receiver at ``read_baud`` makes of ``data`` sent back to back at ``sent_baud``: it
    samples each bit's centre at its own rate from every falling edge; bytes whose stop bit is low are
    lost (framing errors)."""
    bits = []
    for byte in bytes(data):
        bits += [0] + [(byte >> i) & 1 for i in range(8)] + [1]
    sent, read = 1 / sent_baud, 1 / read_baud
    end = len(bits) * sent

    def level(t):
        return bits[int(t / sent)] if t < end else 1

    out = bytearray()
    t, step = 0.0, min(sent, read) / 8
    while t < end:
        if level(t):
            t += step
            continue
        if not level(t + 9.5 * read):
            t += 9.5 * read
            while t < end and not level(t):   # a receiver waits for the line to go high again
                t += step
            continue
        out.append(sum(level(t + (1.5 + i) * read) << i for i in range(8)))
        t += 9.5 * read
    return bytes(out)


def pty_baud(fd):
    """The baud rate a host set on the pty (None for a rate without a termios name: not checked)."""
    import termios

    speed = termios.tcgetattr(fd)[5]
    for name in dir(termios):
        if name.startswith("B") and name[1:].isdigit() and getattr(termios, name) == speed:
            return int(name[1:])
    return None


class LineFaults:
    """Corrupts a byte stream: each byte, with probability ``rate``, is bit-flipped, dropped or sent
    twice (equally likely)."""

    def __init__(self, rate, rng):
        if not 0 <= rate < 1:
            raise ValueError(f"fault rate must be in [0, 1), got {rate}")
        self.rate, self.rng = rate, rng
        self.counts = {"flipped": 0, "dropped": 0, "duplicated": 0}

    def apply(self, data):
        if not self.rate:
            return bytes(data)
        out = bytearray()
        for byte in data:
            if self.rng.random() >= self.rate:
                out.append(byte)
                continue
            kind = self.rng.choice(("flipped", "dropped", "duplicated"))
            self.counts[kind] += 1
            if kind == "flipped":
                out.append(byte ^ (1 << self.rng.randrange(8)))
            elif kind == "duplicated":
                out += bytes([byte, byte])
        return bytes(out)


def _config():
    return json.loads(pathlib.Path(os.environ["HONE_BOARD_CONFIG"]).read_text())


class Line:
    """The host end of the simulated line, in batches (``hone_board_tb``'s FIFO and ring)."""

    def __init__(self, dut, baud):
        self.dut = dut
        self.byte_ns = 10e9 / baud
        self.written = 0
        self.batches = 0
        self.seen = 0
        self.sent_total = 0

    async def reset(self):
        self.dut.rst.value = 1
        for _ in range(4):
            await RisingEdge(self.dut.clk)
        self.dut.rst.value = 0

    def space(self):
        return FIFO_DEPTH - (self.written - int(self.dut.tx_sent.value))

    def queued(self):
        return self.written - int(self.dut.tx_sent.value)

    def send(self, data):
        """Queue up to ``BATCH`` bytes of ``data``; returns how many were taken."""
        data = bytes(data[:min(BATCH, self.space())])
        if data:
            self.dut.tx_block.value = int.from_bytes(data, "little")
            self.dut.tx_len.value = len(data)
            self.batches += 1
            self.dut.tx_batch.value = self.batches
            self.written += len(data)
        return len(data)

    def receive(self):
        count = int(self.dut.rx_count.value)
        new = count - self.seen
        if new > BATCH:
            raise RuntimeError(f"{new} bytes from the board since the last poll overran the {BATCH}-byte ring")
        if not new:
            return b""
        ring = self.dut.rx_block.value.to_unsigned()
        out = bytes((ring >> (8 * ((self.seen + i) % BATCH))) & 0xFF for i in range(new))
        self.seen = count
        return out


@cocotb.test()
async def serve(dut):
    """Bridge the line to a pty (its path goes to the ``ready`` file) until told to stop."""
    config = _config()
    line = Line(dut, config["baud"])
    poll_ns = 8 * line.byte_ns
    rng = random.Random(config.get("seed", 0))
    to_board = LineFaults(config.get("faults", 0.0), rng)
    to_host = LineFaults(config.get("faults", 0.0), rng)
    board_baud = int(config["baud"])
    master, slave = os.openpty()
    tty.setraw(slave)
    os.set_blocking(master, False)
    path = os.ttyname(slave)
    await line.reset()

    ready = pathlib.Path(config["ready"])
    staging = ready.with_name(ready.name + ".tmp")
    staging.write_text(json.dumps({"pty": path, "pid": os.getpid()}))
    staging.replace(ready)
    parent = config.get("parent")
    stop_file = pathlib.Path(config["stop"]) if config.get("stop") else None
    inbound, outbound = bytearray(), bytearray()
    received = sent = 0
    low_water = 4 * 8    # bytes: below this, give the host a moment to write before time moves on
    next_check = time.monotonic()
    start_ns = get_sim_time(unit="ns")
    host_baud = None
    while True:
        await Timer(poll_ns, unit="ns", round_mode="round")
        data = line.receive()
        sent += len(data)
        if host_baud not in (None, board_baud) and data:
            data = retime(data, board_baud, host_baud)
        outbound += to_host.apply(data)
        if outbound:
            try:
                del outbound[:os.write(master, outbound)]
            except BlockingIOError:
                pass
        if not inbound and line.space() >= BATCH:
            wait = 0.0 if line.queued() > low_water else 0.002
            if select.select([master], [], [], wait)[0]:
                try:
                    data = os.read(master, 4096)
                except OSError as error:   # EIO while no one has the pty open
                    if error.errno != errno.EIO:
                        raise
                    data = b""
                received += len(data)
                host_baud = pty_baud(slave)
                if host_baud not in (None, board_baud) and data:
                    data = retime(data, host_baud, board_baud)
                inbound += to_board.apply(data)
        if inbound:
            del inbound[:line.send(inbound)]
        now = time.monotonic()
        if now >= next_check:
            next_check = now + 0.5
            if stop_file is not None and stop_file.exists():
                break
            if parent:
                try:
                    os.kill(parent, 0)
                except ProcessLookupError:
                    break
    os.close(master)
    os.close(slave)
    pathlib.Path(config["results"]).write_text(json.dumps({
        "sim_ns": get_sim_time(unit="ns") - start_ns, "bytes_to_board": received, "bytes_to_host": sent,
        "faults_to_board": to_board.counts, "faults_to_host": to_host.counts}))


def _zero_run_prefix(encoded, limit):
    """The bytes the board writes from corrupt zero-run data before it answers ENCODING: everything
    decoded up to the missing literal or the end of the slot (``limit`` bytes)."""
    out, i = bytearray(), 0
    while i < len(encoded):
        literals, zeros = encoded[i] >> 4, encoded[i] & 0xF
        for byte in list(encoded[i + 1:i + 1 + literals]) + [None] * max(0, i + 1 + literals - len(encoded)) + [0] * zeros:
            if byte is None or len(out) >= limit:
                return bytes(out)
            out.append(byte)
        i += 1 + literals
    return bytes(out)


def _damaged_predictive(rng, image_bytes, max_chunk, row_bytes):
    """Predictive data for a chunk, damaged: bits flipped, cut short, padded, its count changed, or
    garbage after a header."""
    length = rng.randrange(0, min(image_bytes, 24) + 1)
    data = bytes(rng.randrange(256) if rng.random() < 0.4 else 0 for _ in range(length))
    encoded = bytearray(protocol.predictive_encode(data, row_bytes=row_bytes))
    damage = rng.choice(("flip", "truncate", "pad", "count", "garbage"))
    if damage == "flip" and len(encoded) > protocol.PR_HEADER:
        encoded[rng.randrange(protocol.PR_HEADER, len(encoded))] ^= 1 << rng.randrange(8)
    elif damage == "truncate":
        del encoded[rng.randrange(len(encoded)):]
    elif damage == "pad":
        encoded.append(rng.randrange(256))
    elif damage == "count":
        encoded[0:2] = ((length + rng.choice((-1, 1, image_bytes))) % 0x10000).to_bytes(2, "little")
    else:
        encoded[protocol.PR_HEADER:] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 12)))
    return bytes(encoded[:max_chunk])


def garbage_stream(rng, count, *, slots, image_bytes, max_chunk, encodings=0, row_bytes=0):
    """``count`` pieces of garbage, each followed by a valid frame; returns the stream as a list of
    ``bytes`` and ``("break", bit_times)`` items, and the valid frames as ``(seq, type, slot)``.
    With ``encodings`` (a board that decodes zero runs, predictive frames; ``row_bytes`` from its
    INFO), garbage includes good frames with corrupt encoded data (answered ERROR ENCODING), and a
    third of the valid LOADs are encoded (zero runs, or predictive half the time when it decodes both)."""
    items, valid = [], []
    images = {}
    last_infer = {}
    seq = 0
    good = protocol.encode_frame
    for index in range(count):
        kind = rng.choice(("noise", "noise_ends", "truncated", "bad_crc", "oversize", "bad_type",
                           "bad_escape", "bad_length", "break") + (("bad_encoding",) * 2 if encodings else ()))
        if kind == "bad_encoding" and encodings & protocol.Encoding.PREDICTIVE and (
                not encodings & protocol.Encoding.ZERO_RUN or rng.random() < 0.5):
            kind = "bad_predictive"
        sample = good(rng.randrange(256), FrameType.LOAD,
                      protocol.chunk_payload(0, 0, bytes(rng.randrange(256) for _ in range(8))))
        if kind == "noise":
            items.append(bytes(rng.choice([b for b in range(256) if b != protocol.END])
                               for _ in range(rng.randrange(1, 40))))
        elif kind == "noise_ends":
            items.append(bytes(rng.randrange(256) for _ in range(rng.randrange(1, 40))))
        elif kind == "truncated":
            items.append(sample[:rng.randrange(2, len(sample) - 1)])
        elif kind == "bad_crc":
            body = bytearray(protocol.frame_bytes(rng.randrange(256), FrameType.LOAD,
                                                  protocol.chunk_payload(0, 0, b"\x01\x02")))
            body[-1] ^= 1 << rng.randrange(8)
            items.append(protocol.slip_encode(body))
        elif kind == "oversize":
            items.append(good(rng.randrange(256), FrameType.LOAD, bytes(max_chunk + protocol.CHUNK_HEADER + 1)))
        elif kind == "bad_type":
            items.append(good(rng.randrange(256), rng.choice([0x00, 0x08, 0x7F, 0x81, 0xFF])))
        elif kind == "bad_escape":
            items.append(bytes([protocol.END, 1, 2, protocol.ESC, 0x41, 3, protocol.END]))
        elif kind == "bad_length":
            body = bytearray(protocol.frame_bytes(rng.randrange(256), FrameType.INFO, b"\x00\x00"))
            body[2] += 1
            items.append(protocol.slip_encode(body))
        elif kind == "bad_encoding":
            # a slot no inference is using: the board writes what decodes before the error
            target = rng.choice([slot for slot in range(slots) if len(valid) - last_infer.get(slot, -100) > 20])
            offset = rng.randrange(0, image_bytes + 1)
            if rng.random() < 0.5:      # ends inside a literal run
                literals = rng.randrange(1, 16)
                data = bytes([literals << 4 | rng.randrange(16)]) + bytes(
                    rng.randrange(1, 256) for _ in range(rng.randrange(0, literals)))
            else:                       # decodes past the slot
                need = image_bytes - offset + 1
                data = bytes([0x0F]) * ((need + 14) // 15)
            data = data[:max_chunk]
            try:
                protocol.zero_run_decode(data, limit=image_bytes - offset)
            except protocol.ProtocolError:
                written = _zero_run_prefix(data, image_bytes - offset)
                current = bytearray(images.get(target, bytes(image_bytes)))
                current[offset:offset + len(written)] = written
                images[target] = bytes(current)
                items.append(good(rng.randrange(256), FrameType.LOAD_ZR, protocol.chunk_payload(target, offset, data)))
            else:
                items.append(bytes([protocol.END]))   # too long to be corrupt within max_chunk: no garbage
        elif kind == "bad_predictive":
            target = rng.choice([slot for slot in range(slots) if len(valid) - last_infer.get(slot, -100) > 20])
            offset = rng.randrange(0, image_bytes + 1)
            data = _damaged_predictive(rng, image_bytes, max_chunk, row_bytes)
            try:
                protocol.predictive_decode(data, row_bytes=row_bytes, limit=image_bytes - offset)
            except protocol.EncodingError as error:
                # the board writes what decodes before the fault
                current = bytearray(images.get(target, bytes(image_bytes)))
                current[offset:offset + len(error.decoded)] = error.decoded
                images[target] = bytes(current)
                items.append(good(rng.randrange(256), FrameType.LOAD_PR, protocol.chunk_payload(target, offset, data)))
            else:
                items.append(bytes([protocol.END]))   # the damage left it valid: no garbage
        else:
            items.append(("break", rng.randrange(10, 200)))   # at least a byte long: a break
        seq = (seq + 1) % 256
        # like a host: a slot is not written again while its inference may still be running
        free = [slot for slot in range(slots) if len(valid) - last_infer.get(slot, -100) > 20]
        choice = rng.random()
        if choice < 0.01:
            items.append(good(seq, FrameType.INFO))
            valid.append((seq, FrameType.INFO_REPLY, None))
        elif choice < 0.05 and len(free) > 1 and set(images) & set(free):   # keep a slot to load
            slot = rng.choice(sorted(set(images) & set(free)))
            last_infer[slot] = len(valid)
            items.append(good(seq, FrameType.INFER, protocol.chunk_payload(slot, 0, b"")))
            valid.append((seq, FrameType.RESULT, images[slot]))
        else:
            slot = rng.choice(free)
            length = rng.randrange(1, min(image_bytes, max_chunk, 24) + 1)
            offset = rng.randrange(0, image_bytes - length + 1)
            zero_run = encodings and rng.random() < 1 / 3
            data = bytes(rng.randrange(256) if not zero_run or rng.random() < 0.4 else 0 for _ in range(length))
            current = bytearray(images.get(slot, bytes(image_bytes)))
            current[offset:offset + length] = data
            images[slot] = bytes(current)
            if zero_run and encodings & protocol.Encoding.PREDICTIVE and (
                    not encodings & protocol.Encoding.ZERO_RUN or rng.random() < 0.5):
                type, encoded = FrameType.LOAD_PR, protocol.predictive_encode(data, row_bytes=row_bytes)
            else:
                type, encoded = FrameType.LOAD_ZR, protocol.zero_run_encode(data)
            if zero_run and len(encoded) <= max_chunk:
                items.append(good(seq, type, protocol.chunk_payload(slot, offset, encoded)))
            else:
                items.append(good(seq, FrameType.LOAD, protocol.chunk_payload(slot, offset, data)))
            valid.append((seq, FrameType.ACK, None))
    return items, valid


@cocotb.test()
async def garbage_is_answered(dut):
    """Garbage never locks the board up: every valid frame after it is answered, RESULTs are right."""
    from hone.network.integer import IntegerNetwork
    from hone.network.netfile import read_network

    config = _config()
    link = config["description"]["link"]
    outputs = config["description"]["outputs"]
    network, _ = read_network(config["network"])
    rng = random.Random(config.get("seed", 0))
    items, valid = garbage_stream(rng, config["count"], slots=link["slots"], image_bytes=link["image_bytes"],
                                  max_chunk=link["max_chunk"], encodings=link.get("encodings", 0),
                                  row_bytes=link.get("row_bytes", 0))
    if "items" in config:   # replay a slice (debugging)
        first, last = config["items"]
        kept = [i for i in range(first, last) if i % 2]
        valid = [valid[i // 2] for i in kept]
        items = items[first:last]
    line = Line(dut, config["baud"])
    await line.reset()
    parser = protocol.FrameParser()
    replies = []
    start_ns = get_sim_time(unit="ns")
    bit_ns = line.byte_ns / 10

    async def poll():
        await Timer(8 * line.byte_ns, unit="ns", round_mode="round")
        replies.extend(parser.feed(line.receive()))

    pending = bytearray()
    for item in items:
        if isinstance(item, tuple):
            while pending:
                del pending[:line.send(pending)]
                await poll()
            while line.queued():
                await poll()
            dut.hold_low.value = 1
            await Timer(item[1] * bit_ns, unit="ns", round_mode="round")
            dut.hold_low.value = 0
            await Timer(12 * bit_ns, unit="ns", round_mode="round")   # idle, as after any break
            continue
        pending += item
        while len(pending) >= BATCH:
            del pending[:line.send(pending)]
            await poll()
    while pending:
        del pending[:line.send(pending)]
        await poll()
    quiet = 0
    while quiet < 50:
        before = len(replies)
        await poll()
        quiet = quiet + 1 if len(replies) == before and not line.queued() else 0

    frames = [reply for reply in replies if isinstance(reply, protocol.Frame)]
    bad = [reply for reply in replies if not isinstance(reply, protocol.Frame)]
    answered = [(f.seq, f.type) for f in frames if f.type in (FrameType.ACK, FrameType.INFO_REPLY)]
    expected = [(seq, kind) for seq, kind, _ in valid if kind != FrameType.RESULT]
    results = [f for f in frames if f.type == FrameType.RESULT]
    errors = [f for f in frames if f.type == FrameType.ERROR]
    busy = [f.seq for f in errors if f.payload == bytes([protocol.ErrorCode.BUSY])]
    infers = [(seq, image) for seq, kind, image in valid if kind == FrameType.RESULT]
    wrong_results = []
    if busy:
        wrong_results.append(f"{len(busy)} INFERs answered BUSY, seqs {busy[:10]}: the test spaces them out")
    elif len(results) != len(infers):
        wrong_results.append(f"{len(infers)} INFERs but {len(results)} RESULTs")
    reference = IntegerNetwork(network).run(np.array(
        [protocol.unpack_image(image, link["inputs"], link["input_bits"]) for _, image in infers]
        or np.zeros((0, link["inputs"]), dtype=np.int64)))
    for index, ((seq, _), frame) in enumerate(zip(infers, results)):
        got = protocol.parse_result(frame.payload, outputs)
        want_label, want_spikes = int(reference.labels[index]), reference.spikes[-1][index]
        if frame.seq != seq or got.label != want_label or not np.array_equal(got.spikes, want_spikes):
            wrong_results.append(f"INFER {index} (seq {seq}): board seq {frame.seq} label {got.label} spikes "
                                 f"{got.spikes.tolist()}, reference label {want_label} spikes {want_spikes.tolist()}")
    summary = {
        "items": len(items), "valid_frames": len(valid), "answered": len(answered), "expected": len(expected),
        "infers": len(infers), "results": len(results), "errors": len(errors), "bad_replies": len(bad),
        "sim_ns": get_sim_time(unit="ns") - start_ns, "wrong_results": wrong_results[:10],
        "in_order": answered == expected,
        "board_counters": next((protocol.parse_info(f.payload).counters for f in reversed(frames)
                                if f.type == FrameType.INFO_REPLY), None), "first_difference": next(
            ([i, answered[i - 2:i + 3], expected[i - 2:i + 3]] for i, (a, b) in enumerate(zip(answered, expected))
             if a != b), None),
        "error_codes": {code.name: sum(f.payload == bytes([code]) for f in errors) for code in protocol.ErrorCode},
    }
    pathlib.Path(config["results"]).write_text(json.dumps(summary))
    assert not bad, f"{len(bad)} replies from the board did not decode: {bad[:3]}"
    assert answered == expected, (f"{len(expected)} ACK/INFO replies expected in order, got {len(answered)}; "
                                  f"first difference at {next((i for i, (a, b) in enumerate(zip(answered, expected)) if a != b), min(len(answered), len(expected)))}")
    assert not wrong_results, "\n".join(wrong_results)
