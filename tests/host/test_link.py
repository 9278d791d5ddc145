"""The serial link: protocol model, gateware (Amaranth and cocotb), host Board, hone infer / sim-board."""

import json
import random
import re
import struct
import time

import numpy as np
import pytest
from amaranth.sim import Simulator
from hypothesis import given, settings
from hypothesis import strategies as st

from hone.rtl import protocol
from hone.rtl.board import BoardTop
from hone.rtl.protocol import END, ESC, ErrorCode, Frame, FrameType
from hone.rtl.uart import MIN_DIVISOR, UARTReceiver, divisor_for, receiver_tolerance
from hone.sim.bridge import garbage_stream
from hone.network.random import random_dense_network
from hone.network.integer import IntegerNetwork
from hone.network.netfile import write_network

FASHION = "tests/data/fashion-dense-4bit.hone"

# Amaranth closes the endless UART watcher coroutines when a simulation ends; that is not an error
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


@pytest.fixture(scope="module")
def builds(tmp_path_factory):
    """One build folder for the module: each board configuration is built once."""
    return tmp_path_factory.mktemp("builds")


@pytest.fixture(scope="module")
def small_net(tmp_path_factory):
    rng = np.random.default_rng(3)
    network = random_dense_network(rng, input_shape=(4, 4, 1), input_bits=3, widths=(12,), classes=3, nhot=2)
    path = tmp_path_factory.mktemp("link") / "small.hone"
    write_network(path, network)
    return network, path


# -- protocol model -----------------------------------------------------------------------------

@settings(max_examples=300, deadline=None)
@given(seq=st.integers(0, 0xFFFF), type=st.integers(0, 255), payload=st.binary(max_size=300))
def test_frames_round_trip(seq, type, payload):
    wire = protocol.encode_frame(seq, type, payload)
    assert wire[0] == END and wire[-1] == END and END not in wire[1:-1]
    assert protocol.FrameParser().feed(wire) == [Frame(seq, type, payload)]


@settings(max_examples=200, deadline=None)
@given(garbage=st.lists(st.binary(min_size=1, max_size=60), min_size=1, max_size=50),
       seq=st.integers(0, 0xFFFF), payload=st.binary(max_size=40))
def test_a_good_frame_after_any_garbage_is_decoded(garbage, seq, payload):
    parser = protocol.FrameParser()
    out = []
    for piece in garbage:
        out += parser.feed(piece)
    out += parser.feed(protocol.encode_frame(seq, FrameType.LOAD, payload))
    assert out[-1] == Frame(seq, FrameType.LOAD, payload)
    # garbage may by chance be a frame, but never one that fails its own CRC check undetected
    for item in out[:-1]:
        assert isinstance(item, (Frame, protocol.BadFrame))


def test_host_decoder_answers_every_valid_frame_among_10000_garbage_frames():
    items, valid = garbage_stream(random.Random(7), 10_000, slots=4, image_bytes=98, max_chunk=98)
    parser = protocol.FrameParser()
    frames = []
    for item in items:
        frames += parser.feed(b"\x00", errors=[0]) if isinstance(item, tuple) else parser.feed(item)
    good = [(f.seq, f.type) for f in frames if isinstance(f, Frame) and f.type in (FrameType.LOAD, FrameType.INFO,
                                                                                  FrameType.INFER)]
    requests = {FrameType.ACK: FrameType.LOAD, FrameType.INFO_REPLY: FrameType.INFO,
                FrameType.RESULT: FrameType.INFER}
    expected = [(seq, requests[kind]) for seq, kind, _ in valid]
    # oversize garbage frames parse (the board refuses them by length); every valid one is there, in order
    it = iter(good)
    assert all(any(g == e for g in it) for e in expected)
    bad = [f for f in frames if isinstance(f, protocol.BadFrame)]
    assert {f.code for f in bad} >= {ErrorCode.CRC, ErrorCode.LENGTH, ErrorCode.FRAMING}


def test_bad_frames_get_the_board_error_codes():
    body = bytearray(protocol.frame_bytes(5, FrameType.INFO))
    body[-1] ^= 1
    parser = protocol.FrameParser()
    assert parser.feed(protocol.slip_encode(body)) == [protocol.BadFrame(ErrorCode.CRC, 5, len(body))]
    assert parser.feed(protocol.encode_frame(6, FrameType.INFO)[:-3] + bytes([END])) [0].code == ErrorCode.LENGTH
    assert parser.feed(bytes([END, 1, 2, ESC, 0x41, END]))[0].code == ErrorCode.FRAMING
    assert parser.feed(bytes([END, END, END])) == []


@settings(max_examples=300, deadline=None)
@given(data=st.lists(st.sampled_from([0, 0, 0, 1, 7, 255]), max_size=300).map(bytes) | st.binary(max_size=100))
def test_zero_runs_round_trip(data):
    encoded = protocol.zero_run_encode(data)
    assert protocol.zero_run_decode(encoded) == data
    assert len(encoded) <= len(data) + (len(data) + 14) // 15


@settings(max_examples=300, deadline=None)
@given(encoded=st.binary(max_size=60), limit=st.integers(0, 200))
def test_zero_run_decoder_model_accepts_or_refuses_anything(encoded, limit):
    try:
        decoded = protocol.zero_run_decode(encoded, limit=limit)
    except protocol.ProtocolError as error:
        assert re.match(r"^zero-run data (ends inside a literal run at byte \d+|decodes past \d+ bytes)$", str(error))
    else:
        assert len(decoded) <= limit


def test_zero_runs_fall_back_to_raw_frames_when_they_do_not_pay():
    dense = bytes(range(1, 101))
    assert protocol.image_request(dense, final=True, encodings=protocol.Encoding.ZERO_RUN) == (FrameType.INFER, dense)
    sparse = bytes(50) + b"\x05" + bytes(49)
    assert protocol.image_request(sparse, final=False, encodings=protocol.Encoding.ZERO_RUN) == (
        FrameType.LOAD_ZR, protocol.zero_run_encode(sparse))
    assert protocol.image_request(sparse, final=True, encodings=0) == (FrameType.INFER, sparse)


@st.composite
def packed_chunks(draw):
    """A random image of 1..16-bit pixels, packed, its row bytes, and a chunk of it."""
    bits = draw(st.integers(1, 16))
    shape = (draw(st.integers(1, 9)), draw(st.integers(1, 9)), draw(st.integers(1, 3)))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 1 << bits, size=shape)
    pixels *= rng.random(shape) < draw(st.sampled_from([0.0, 0.3, 0.7, 1.0]))    # zeros, in runs or not
    if draw(st.booleans()):
        pixels = np.minimum(np.cumsum(pixels, axis=1) // 3, (1 << bits) - 1)   # smooth, like photographs
    data = protocol.pack_image(pixels, bits)
    start = draw(st.integers(0, len(data)))
    end = draw(st.integers(start, len(data)))
    return data, protocol.image_row_bytes(shape, bits), start, end


@settings(max_examples=300, deadline=None)
@given(chunk=packed_chunks(), params=st.none() | st.tuples(st.integers(0, 7), st.integers(0, 7)))
def test_predictive_code_round_trips(chunk, params):
    data, row, start, end = chunk
    k, run_k = params or (None, None)
    piece = data[start:end]
    encoded = protocol.predictive_encode(piece, row_bytes=row, k=k, run_k=run_k)
    assert protocol.predictive_decode(encoded, row_bytes=row, limit=len(data) - start) == piece
    assert encoded[:2] == len(piece).to_bytes(2, "little")
    if params is None:      # the chosen parameters are the best of all 64
        assert len(encoded) == min(len(protocol.predictive_encode(piece, row_bytes=row, k=a, run_k=b))
                                   for a in range(8) for b in range(8))
    else:
        assert encoded[2] == k | run_k << 4


def test_predictive_code_beats_zero_runs_on_fashion_mnist():
    from hone.network.datasets import network_test_images

    network, pixels, _, _ = network_test_images(FASHION, 300)
    row = protocol.image_row_bytes(network.input.shape, network.input.bits)
    assert row == 28
    sizes = {encodings: np.mean([protocol.request_frame_bytes(protocol.pack_image(image, 8), encodings=encodings,
                                                              row_bytes=row) for image in pixels])
             for encodings in (0, protocol.Encoding.ZERO_RUN, protocol.Encoding.ZERO_RUN | protocol.Encoding.PREDICTIVE)}
    assert sizes[0] >= 798 and 460 < sizes[protocol.Encoding.ZERO_RUN] < 500      # escapes included
    assert sizes[protocol.Encoding.ZERO_RUN | protocol.Encoding.PREDICTIVE] < 440, sizes


PR_ERRORS = (r"^predictive data (of \d+ bytes is shorter than its 3-byte header|decodes past \d+ bytes \(\d+\)|"
             r"ends after \d+ of \d+ bytes|has a unary part over \d+ at byte \d+|has a run past \d+ bytes at byte \d+|"
             r"ends a run with a zero byte at byte \d+|has \d+ bytes after its last bit)$")


@settings(max_examples=500, deadline=None)
@given(encoded=st.binary(max_size=40), limit=st.integers(0, 60), row=st.integers(0, 6))
def test_predictive_decoder_model_accepts_or_refuses_anything(encoded, limit, row):
    try:
        decoded = protocol.predictive_decode(encoded, row_bytes=row, limit=limit)
    except protocol.EncodingError as error:
        assert re.match(PR_ERRORS, str(error)), str(error)
        assert len(error.decoded) <= limit
    else:
        assert len(decoded) <= limit and len(decoded) == int.from_bytes(encoded[:2], "little")


def test_predictive_decoder_refuses_corrupt_data():
    data = bytes([0, 0, 0, 9, 9, 8, 0, 0, 7, 6, 0, 0])
    good = protocol.predictive_encode(data, row_bytes=4, k=1, run_k=0)

    def refused(encoded, message, decoded=None, limit=None):
        with pytest.raises(protocol.EncodingError, match=message) as error:
            protocol.predictive_decode(encoded, row_bytes=4, limit=limit)
        if decoded is not None:
            assert error.value.decoded == decoded
        return error.value.decoded

    assert protocol.predictive_decode(good, row_bytes=4) == data
    refused(good[:2], r"^predictive data of 2 bytes is shorter than its 3-byte header$", b"")
    refused(good, r"^predictive data decodes past 11 bytes \(12\)$", b"", limit=11)
    partial = refused(good[:-1], r"^predictive data ends after \d+ of 12 bytes$")
    assert data.startswith(partial) and 0 < len(partial) < 12
    refused(good + b"\x00", r"^predictive data has 1 bytes after its last bit$", data)
    # a run of 4 zero bytes where 3 are left: run_k 0, unary 1111 then 0
    refused(bytes([3, 0, 0, 0b01111]), r"^predictive data has a run past 3 bytes at byte 0$", b"")
    # a run of 2 ended by 'v = 255' (k = 7: unary 1, then 7 ones): that would be a zero byte
    refused(bytes([4, 0, 0x07, 0b11101011, 0b1111]), r"^predictive data ends a run with a zero byte at byte 2$",
            bytes(2))
    # k = 7 allows a unary part of 1 at most (values are 0..255); every unary bit is bounded
    refused(bytes([2, 0, 0x07, 0b110]), r"^predictive data has a unary part over 1 at byte 0$", b"")
    refused(bytes([0xFF, 0xFF, 0x00]) + b"\xff" * 40, r"^predictive data has a unary part over 255 at byte 0$", b"")


def test_image_requests_take_the_shortest_encoding_the_board_decodes():
    both = protocol.Encoding.ZERO_RUN | protocol.Encoding.PREDICTIVE
    dense = bytes(range(1, 101))[::-1] + bytes(range(1, 101))
    assert protocol.image_request(dense, final=True, encodings=both, row_bytes=10)[0] == FrameType.INFER_PR
    noise = np.random.default_rng(0).integers(1, 256, size=100).astype(np.uint8).tobytes()
    assert protocol.image_request(noise, final=True, encodings=both, row_bytes=10) == (FrameType.INFER, noise)
    sparse = bytes(50) + b"\x05" + bytes(49)
    assert protocol.image_request(sparse, final=False, encodings=both, row_bytes=0) == (
        FrameType.LOAD_PR, protocol.predictive_encode(sparse, row_bytes=0))
    assert protocol.image_request(sparse, final=True, encodings=protocol.Encoding.ZERO_RUN)[0] == FrameType.INFER_ZR
    assert protocol.image_request(b"", final=True, encodings=both) == (FrameType.INFER, b"")


@pytest.mark.parametrize("bits", range(1, 17))
def test_images_pack_and_unpack(bits):
    pixels = np.random.default_rng(bits).integers(0, 1 << bits, size=37)
    data = protocol.pack_image(pixels, bits)
    assert len(data) == protocol.image_bytes(37, bits)
    np.testing.assert_array_equal(protocol.unpack_image(data, 37, bits), pixels)


def test_protocol_errors_name_the_value():
    with pytest.raises(protocol.ProtocolError, match=r"^pixels must be 0\.\.7 for 3-bit input, got 0\.\.9$"):
        protocol.pack_image([0, 9], 3)
    with pytest.raises(protocol.ProtocolError, match=r"^input bits must be 1\.\.16, got 17$"):
        protocol.pack_image([0, 1], 17)
    with pytest.raises(protocol.ProtocolError, match=r"^seq must be 0\.\.65535, got 70000$"):
        protocol.frame_bytes(70000, FrameType.INFO)
    with pytest.raises(protocol.ProtocolError, match=r"^INFO payload has 3 bytes, expected \d+$"):
        protocol.parse_info(b"abc")
    with pytest.raises(ValueError, match=r"^baud 3000000 is too fast for a 12 MHz clock: the receiver needs at "
                                         r"least 8 clocks per bit, got 4\.00$"):
        divisor_for(12e6, 3_000_000)


# -- gateware in Amaranth's simulator --------------------------------------------------------------

def uart_receiver(top, divisor, received):
    """A testbench that decodes the board's tx pin (8N1, ``divisor`` clocks a bit) into ``received``."""
    async def watch(ctx):
        while True:
            await ctx.tick().until(top.tx == 0)
            await ctx.tick().repeat(divisor // 2)
            byte = 0
            for i in range(8):
                await ctx.tick().repeat(divisor)
                byte |= ctx.get(top.tx) << i
            await ctx.tick().repeat(divisor)
            assert ctx.get(top.tx) == 1, "stop bit"
            received.append(byte)
    return watch


def run_board(top, stream, *, clock, tail=0.02, pixel_clocks=None):
    """Drive ``stream`` into the board's rx pin at its baud; returns the bytes it sent. The clocks
    at which the core takes a pixel go to ``pixel_clocks``."""
    divisor = top.figures["divisor"]
    received = bytearray()
    sim = Simulator(top)
    sim.add_clock(1 / clock)

    async def pixels(ctx):
        clock_index = 0
        async for _, _, valid, ready in ctx.tick().sample(top.core.pixels.valid, top.core.pixels.ready):
            clock_index += 1
            if valid and ready:
                pixel_clocks.append(clock_index)

    async def drive(ctx):
        for byte in stream:
            for bit in [0] + [(byte >> i) & 1 for i in range(8)] + [1]:
                ctx.set(top.rx, bit)
                await ctx.tick().repeat(divisor)

    watch = uart_receiver(top, divisor, received)

    sim.add_testbench(drive)
    sim.add_testbench(watch, background=True)
    if pixel_clocks is not None:
        sim.add_process(pixels)
    sim.run_until(len(stream) * 10 * divisor / clock + tail)
    return bytes(received)


def test_board_answers_info_load_infer_and_garbage(small_net):
    network, _ = small_net
    clock = 1_000_000
    top = BoardTop(network, lanes=4, clock_hz=clock, baud=125_000, slots=2)
    images = np.random.default_rng(1).integers(0, 8, size=(3, 16))
    reference = IntegerNetwork(network).run(images)
    gap = bytes([END]) * 20    # empty frames: time for each ERROR to go out before the next
    stream = [b"\x12\x34\xc0", gap, protocol.encode_frame(30, 0x55), gap,
              protocol.encode_frame(31, FrameType.LOAD, protocol.chunk_payload(2, 0, b"x")), gap,
              protocol.encode_frame(32, FrameType.LOAD, protocol.chunk_payload(0, 5, b"xy")), gap,
              protocol.encode_frame(1, FrameType.INFO)]
    for i, image in enumerate(images):
        data = protocol.pack_image(image, 3)
        stream.append(protocol.encode_frame(10 + i, FrameType.LOAD, protocol.chunk_payload(i % 2, 0, data[:3])))
        stream.append(protocol.encode_frame(20 + i, FrameType.INFER, protocol.chunk_payload(i % 2, 3, data[3:])))
    pixel_clocks = []
    frames = protocol.FrameParser().feed(run_board(top, b"".join(stream), clock=clock, pixel_clocks=pixel_clocks))
    assert all(isinstance(f, Frame) for f in frames), frames
    # the loader hands the core one pixel per clock (hone.rtl.board.loader_cycles)
    assert len(pixel_clocks) == 3 * 16
    for image in range(3):
        clocks = pixel_clocks[16 * image:16 * image + 16]
        assert clocks == list(range(clocks[0], clocks[0] + 16)), clocks
    info = protocol.parse_info(next(f.payload for f in frames if f.type == FrameType.INFO_REPLY))
    assert (info.network_sha256, info.inputs, info.input_bits, info.slots, info.lanes, info.max_chunk) == (
        network.sha256, 16, 3, 2, 4, 6)
    assert [f.seq for f in frames if f.type == FrameType.ACK] == [10, 11, 12]
    results = [f for f in frames if f.type == FrameType.RESULT]
    assert [f.seq for f in results] == [20, 21, 22]
    for index, frame in enumerate(results):
        result = protocol.parse_result(frame.payload, network.layers[-1].outputs)
        assert result.label == reference.classes[index]
        np.testing.assert_array_equal(result.spikes, reference.spikes[-1][index])
    errors = {f.seq: ErrorCode(f.payload[0]) for f in frames if f.type == FrameType.ERROR}
    assert errors == {0x3412: ErrorCode.LENGTH, 30: ErrorCode.TYPE, 31: ErrorCode.ADDRESS, 32: ErrorCode.ADDRESS}


@pytest.mark.parametrize("bits", [9, 12, 16])
def test_board_runs_wide_input_equal_to_the_integer_network(bits):
    """9..16-bit pixels travel packed (two bytes or less per pixel) and the loader unpacks them."""
    rng = np.random.default_rng(bits)
    network = random_dense_network(rng, input_shape=(3, 5, 1), input_bits=bits, widths=(10,), classes=3, nhot=2)
    clock = 1_000_000
    top = BoardTop(network, lanes=4, clock_hz=clock, baud=125_000, slots=2)
    images = rng.integers(0, 1 << bits, size=(4, 15))
    images[0, :] = (1 << bits) - 1                       # every pixel at full scale
    images[1, ::2] = 0
    reference = IntegerNetwork(network).run(images)
    stream = []
    for i, image in enumerate(images):
        data = protocol.pack_image(image, bits)
        assert len(data) == (15 * bits + 7) // 8
        stream.append(protocol.encode_frame(10 + i, FrameType.LOAD, protocol.chunk_payload(i % 2, 0, data[:5])))
        stream.append(protocol.encode_frame(20 + i, FrameType.INFER, protocol.chunk_payload(i % 2, 5, data[5:])))
    frames = protocol.FrameParser().feed(run_board(top, b"".join(stream), clock=clock))
    results = [f for f in frames if isinstance(f, Frame) and f.type == FrameType.RESULT]
    assert [f.seq for f in results] == [20, 21, 22, 23], frames
    for index, frame in enumerate(results):
        result = protocol.parse_result(frame.payload, network.layers[-1].outputs)
        assert result.label == reference.classes[index], f"image {index}: board {result.label}, reference {reference.classes[index]}"
        np.testing.assert_array_equal(result.spikes, reference.spikes[-1][index])


def test_board_decodes_zero_runs_and_answers_corrupt_ones_with_an_error(small_net):
    """Zero-run chunks (valid, truncated, decoding past the slot, random) against the model:
    each gets ACK or RESULT when zero_run_decode accepts it, ERROR ENCODING otherwise; raw and
    encoded images give the reference's results, and the board still answers afterwards."""
    network, _ = small_net
    clock = 1_000_000
    top = BoardTop(network, lanes=4, clock_hz=clock, baud=125_000, slots=2)
    assert top.figures["encodings"] == protocol.Encoding.ZERO_RUN | protocol.Encoding.PREDICTIVE
    image = top.figures["image_bytes"]
    rng = np.random.default_rng(11)
    images = rng.integers(0, 8, size=(3, 16)) * (rng.random((3, 16)) < 0.4)
    images[2] = 0                              # an all-zero image: two header bytes
    reference = IntegerNetwork(network).run(images)
    gap = bytes([END]) * 20
    stream, expected = [], []
    for i, pixels in enumerate(images):
        data = protocol.pack_image(pixels, 3)
        type, payload = protocol.image_request(data, final=True, encodings=protocol.Encoding.ZERO_RUN)
        assert (type == FrameType.INFER_ZR) == (len(protocol.zero_run_encode(data)) < len(data))
        stream.append(protocol.encode_frame(40 + i, type, protocol.chunk_payload(i % 2, 0, payload)))
        expected.append((40 + i, FrameType.RESULT))
    pyrng = random.Random(4)
    corrupt = [bytes([0x30, 1, 2]), bytes([0x0F]) * 2, bytes([0x07]), bytes([0x42, 1, 2, 0x20, 3, 4])]
    assert top.figures["max_chunk"] >= 6       # truncated; past the slot (x3); all fit one chunk
    for k in range(24):
        data = corrupt[k] if k < len(corrupt) else pyrng.randbytes(pyrng.randrange(0, 5))
        offset = pyrng.randrange(0, image + 1) if k >= len(corrupt) else 0
        try:
            protocol.zero_run_decode(data, limit=image - offset)
            want = FrameType.ACK
        except protocol.ProtocolError:
            want = FrameType.ERROR
        stream += [gap, protocol.encode_frame(60 + k, FrameType.LOAD_ZR, protocol.chunk_payload(1, offset, data))]
        expected.append((60 + k, want))
    stream += [gap, protocol.encode_frame(99, FrameType.INFO)]
    expected.append((99, FrameType.INFO_REPLY))
    frames = protocol.FrameParser().feed(run_board(top, b"".join(stream), clock=clock))
    assert all(isinstance(f, Frame) for f in frames), frames
    assert [(f.seq, f.type) for f in frames] == expected
    assert all(f.payload == bytes([ErrorCode.ENCODING]) for f in frames if f.type == FrameType.ERROR)
    for index, frame in enumerate(frames[:3]):
        result = protocol.parse_result(frame.payload, network.layers[-1].outputs)
        assert result.label == reference.classes[index]
        np.testing.assert_array_equal(result.spikes, reference.spikes[-1][index])
    info = protocol.parse_info(frames[-1].payload)
    assert info.encodings == protocol.Encoding.ZERO_RUN | protocol.Encoding.PREDICTIVE
    assert info.counters["errors_encoding"] == sum(kind == FrameType.ERROR for _, kind in expected)


def run_board_slots(top, stream, *, clock):
    """:func:`run_board`, and the slot memory's bytes afterwards."""
    received = bytearray()
    slots = []
    divisor = top.figures["divisor"]
    sim = Simulator(top)
    sim.add_clock(1 / clock)

    async def drive(ctx):
        for byte in stream:
            for bit in [0] + [(byte >> i) & 1 for i in range(8)] + [1]:
                ctx.set(top.rx, bit)
                await ctx.tick().repeat(divisor)
        await ctx.tick().repeat(2000 * divisor)        # the replies, INFO's included, go out
        slots.extend(ctx.get(top.slot_data[i]) for i in range(top.slot_data.depth))

    watch = uart_receiver(top, divisor, received)

    sim.add_testbench(drive)
    sim.add_testbench(watch, background=True)
    sim.run()
    return bytes(received), bytes(slots)


def test_board_decodes_predictive_frames_like_the_model():
    """LOAD_PR / INFER_PR (valid with random parameters, corrupted, truncated, padded, garbage) against
    predictive_decode: ACK or RESULT where the model accepts, ERROR ENCODING where it refuses, the
    slot memory byte for byte as the model writes it (also the bytes before an error), and the board
    answers INFO afterwards."""
    rng = np.random.default_rng(21)
    network = random_dense_network(rng, input_shape=(5, 6, 1), input_bits=8, widths=(10,), classes=3, nhot=2)
    clock = 1_000_000
    top = BoardTop(network, lanes=4, clock_hz=clock, baud=125_000, slots=2)
    fig = top.figures
    image, row, max_chunk = fig["image_bytes"], fig["row_bytes"], fig["max_chunk"]
    assert (image, row, max_chunk) == (30, 6, 30)
    assert fig["encodings"] == protocol.Encoding.ZERO_RUN | protocol.Encoding.PREDICTIVE
    pyrng = random.Random(5)
    memory = bytearray(2 * image)

    def chunk_bytes(length):
        kind = pyrng.choice(("sparse", "smooth", "noise", "zeros"))
        if kind == "zeros":
            return bytes(length)
        if kind == "smooth":
            level = pyrng.randrange(256)
            return bytes((level := (level + pyrng.randrange(-3, 4)) % 256) for _ in range(length))
        return bytes(pyrng.randrange(256) if kind == "noise" or pyrng.random() < 0.3 else 0 for _ in range(length))

    # a unary part over 1 at k = 7; a run ended by v = 255 (a zero byte); over 127 at k = 1
    crafted = [bytes([2, 0, 0x07, 0b110]), bytes([4, 0, 0x07, 0b11101011, 0b1111]), bytes([3, 0, 0x01, 0xFE]) + b"\xff" * 16]
    stream, expected, infers = [], [], []
    seq = 100
    for index in range(48):
        seq += 1
        slot = pyrng.randrange(2)
        offset = pyrng.randrange(image + 1)
        length = pyrng.randrange(image - offset + 1)
        data = chunk_bytes(length)
        params = {} if pyrng.random() < 0.5 else {"k": pyrng.randrange(8), "run_k": pyrng.randrange(8)}
        try:
            encoded = protocol.predictive_encode(data, row_bytes=row, **params)
        except protocol.ProtocolError:
            encoded = protocol.predictive_encode(data, row_bytes=row)
        damage = pyrng.choice(("none", "none", "flip", "truncate", "pad", "garbage", "count"))
        if damage == "flip" and len(encoded) > 3:
            position = pyrng.randrange(3, len(encoded))
            encoded = encoded[:position] + bytes([encoded[position] ^ 1 << pyrng.randrange(8)]) + encoded[position + 1:]
        elif damage == "truncate":
            encoded = encoded[:pyrng.randrange(len(encoded))]
        elif damage == "pad":
            encoded += bytes([pyrng.randrange(256)])
        elif damage == "garbage":
            encoded = bytes([pyrng.randrange(image + 2), 0]) + pyrng.randbytes(pyrng.randrange(1, 12))
        elif damage == "count":
            encoded = (int.from_bytes(encoded[:2], "little") + pyrng.choice((-1, 1))).to_bytes(2, "little", signed=True)[:2] + encoded[2:]
        if index < len(crafted):
            encoded = crafted[index]
        encoded = encoded[:max_chunk]
        try:
            decoded = protocol.predictive_decode(encoded, row_bytes=row, limit=image - offset)
            want = FrameType.ACK
        except protocol.EncodingError as error:
            decoded = error.decoded
            want = FrameType.ERROR
        memory[slot * image + offset:slot * image + offset + len(decoded)] = decoded
        stream += [bytes([END]) * 4, protocol.encode_frame(seq, FrameType.LOAD_PR,
                                                           protocol.chunk_payload(slot, offset, encoded))]
        expected.append((seq, want))
        if index % 16 == 15:      # a whole image, predictively coded, run: its result is the reference's
            pixels = np.frombuffer(chunk_bytes(image), dtype=np.uint8)
            seq += 1
            stream += [bytes([END]) * 4, protocol.encode_frame(seq, FrameType.INFER_PR, protocol.chunk_payload(
                slot, 0, protocol.predictive_encode(pixels.tobytes(), row_bytes=row)))]
            stream.append(bytes([END]) * 40)
            memory[slot * image:(slot + 1) * image] = pixels.tobytes()
            expected.append((seq, FrameType.RESULT))
            infers.append(pixels)
    stream += [bytes([END]) * 4, protocol.encode_frame(999, FrameType.INFO)]
    expected.append((999, FrameType.INFO_REPLY))
    assert {kind for _, kind in expected} >= {FrameType.ACK, FrameType.ERROR, FrameType.RESULT}
    received, slots = run_board_slots(top, b"".join(stream), clock=clock)
    frames = protocol.FrameParser().feed(received)
    assert all(isinstance(f, Frame) for f in frames), frames
    got = [(f.seq, f.type) for f in frames]
    assert got == expected, (len(got), len(expected), next(((i, got[i], expected[i]) for i in range(len(got)) if got[i] != expected[i]), None))
    assert all(f.payload == bytes([ErrorCode.ENCODING]) for f in frames if f.type == FrameType.ERROR)
    assert slots == bytes(memory), [i for i in range(len(memory)) if slots[i] != memory[i]]
    reference = IntegerNetwork(network).run(np.array(infers, dtype=np.int64))
    for index, frame in enumerate(f for f in frames if f.type == FrameType.RESULT):
        result = protocol.parse_result(frame.payload, network.layers[-1].outputs)
        assert result.label == reference.classes[index]
        np.testing.assert_array_equal(result.spikes, reference.spikes[-1][index])
    info = protocol.parse_info(frames[-1].payload)
    assert (info.encodings, info.row_bytes) == (protocol.Encoding.ZERO_RUN | protocol.Encoding.PREDICTIVE, 6)
    assert info.counters["errors_encoding"] == sum(kind == FrameType.ERROR for _, kind in expected)


def test_board_survives_a_line_held_low(small_net):
    network, _ = small_net
    clock = 1_000_000
    top = BoardTop(network, lanes=4, clock_hz=clock, baud=125_000, slots=2)
    divisor = top.figures["divisor"]
    received = bytearray()
    sim = Simulator(top)
    sim.add_clock(1 / clock)
    frame = protocol.encode_frame(9, FrameType.INFO)

    async def drive(ctx):
        ctx.set(top.rx, 0)
        await ctx.tick().repeat(divisor * 300)      # a long break
        ctx.set(top.rx, 1)
        await ctx.tick().repeat(divisor * 12)
        for byte in frame:
            for bit in [0] + [(byte >> i) & 1 for i in range(8)] + [1]:
                ctx.set(top.rx, bit)
                await ctx.tick().repeat(divisor)

    watch = uart_receiver(top, divisor, received)

    sim.add_testbench(drive)
    sim.add_testbench(watch, background=True)
    sim.run_until((300 + 12 + 10 * len(frame) + 2000) * divisor / clock)
    frames = protocol.FrameParser().feed(received)
    assert [(f.type, f.seq) for f in frames][-1] == (FrameType.INFO_REPLY, 9)
    assert any(f.type == FrameType.ERROR and f.payload == bytes([ErrorCode.FRAMING]) for f in frames)


def receive_skewed(divisor, skew, data, *, seed, clock=1_000_000):
    """Bytes back to back into a :class:`UARTReceiver` at bits of ``divisor * (1 + skew)`` clocks, the
    line starting at a random phase of the clock; returns what it delivered as (byte, error)."""
    rng = random.Random(seed)
    receiver = UARTReceiver(divisor)
    got = []
    sim = Simulator(receiver)
    sim.add_clock(1 / clock)
    bit = divisor * (1 + skew) / clock

    async def drive(ctx):
        await ctx.delay((3 + rng.random()) / clock)
        for byte in data:
            for level in [0] + [(byte >> i) & 1 for i in range(8)] + [1]:
                ctx.set(receiver.rx, level)
                await ctx.delay(bit)

    async def watch(ctx):
        async for _, _, valid, byte, error in ctx.tick().sample(
                receiver.bytes.valid, receiver.bytes.payload.data, receiver.bytes.payload.error):
            if valid:
                got.append((byte, error))

    sim.add_testbench(drive)
    sim.add_process(watch)
    sim.run_until((len(data) + 4) * 10 * bit + 3 / clock)
    return got


def test_receiver_tolerates_skewed_bit_times_at_the_fewest_clocks_per_bit_of_any_target():
    """At least +-2% both ways at the lowest clocks per bit any board uses, and as much as the
    timing model (receiver_tolerance) says, back to back, at random phases."""
    from hone.boards.targets import TARGETS

    divisor = min(target.uart().divisor for target in TARGETS.values())
    assert divisor == MIN_DIVISOR
    slower, faster = receiver_tolerance(divisor)
    assert slower >= 0.02 and faster >= 0.02
    data = list(random.Random(1).randbytes(40)) + [0x00, 0xFF, 0x55, 0xAA, 0x00, 0x00, 0xFF, 0xFF]
    for skew in (-0.02, +0.02, -(faster - 0.002), slower - 0.002):
        for seed in range(3):
            got = receive_skewed(divisor, skew, data, seed=seed)
            assert got == [(byte, 0) for byte in data], (
                f"{divisor} clocks per bit, bits {skew:+.1%} long, seed {seed}: received "
                f"{len(got)} bytes, {sum(e for _, e in got)} framing errors, first wrong at "
                f"{next((i for i, (a, b) in enumerate(zip(got, data)) if a != (b, 0)), None)}")
    # beyond the model's tolerance the receiver does fail: the model is not merely pessimistic
    assert receive_skewed(divisor, -(faster + 0.01), data, seed=0) != [(byte, 0) for byte in data]
    assert receive_skewed(divisor, slower + 0.01, data, seed=0) != [(byte, 0) for byte in data]


# -- gateware under cocotb: 10,000 garbage frames ----------------------------------------------------

@pytest.mark.parametrize("simulator, count", [("verilator", 3_000), ("icarus", 150)])
def test_rtl_answers_every_valid_frame_after_garbage(small_net, builds, simulator, count):
    from hone.sim.board import run_bridge

    _, path = small_net
    summary = run_bridge(path, testcase="garbage_is_answered", simulator=simulator, lanes=4, clock_hz=12_000_000,
                         baud=1_500_000, slots=3, build_root=builds, config={"count": count})
    assert summary["valid_frames"] == count
    assert summary["in_order"] and summary["answered"] == summary["expected"], summary
    assert summary["results"] == summary["infers"] > 0 and not summary["wrong_results"], summary
    assert summary["bad_replies"] == 0
    codes = summary["error_codes"]
    assert codes["CRC"] and codes["LENGTH"] and codes["TYPE"] and codes["FRAMING"], codes
    assert codes["ENCODING"], codes            # corrupt zero-run and predictive data (a good frame) is answered
    # the stream had both kinds of encoded frames, valid and corrupt
    items, _ = garbage_stream(random.Random(0), count, slots=3, image_bytes=6, max_chunk=6,
                              encodings=protocol.Encoding.ZERO_RUN | protocol.Encoding.PREDICTIVE)
    types = [f.type for f in protocol.FrameParser().feed(b"".join(i for i in items if isinstance(i, bytes)))
             if isinstance(f, Frame)]
    assert types.count(FrameType.LOAD_PR) > 10 and types.count(FrameType.LOAD_ZR) > 10


# -- host Board against a simulated board ---------------------------------------------------------

@pytest.mark.parametrize("faults", [0.0, 0.02])
def test_board_infers_every_image_exactly_once(small_net, builds, faults):
    from hone.host.board import Board

    network, path = small_net
    images = np.random.default_rng(5).integers(0, 8, size=(30 if faults else 120, 16))
    reference = IntegerNetwork(network).run(images)
    with Board.open(f"sim:{path}", baud=1_500_000, lanes=4, clock_hz=12_000_000, slots=3, faults=faults,
                    seed=3, build_root=builds) as board:
        info = board.check(network)
        results = list(board.infer(images))
        stats = board.stats
    assert info.baud == 1_500_000 and info.slots == 3
    assert [r.index for r in results] == list(range(len(images)))
    np.testing.assert_array_equal([r.label for r in results], reference.classes)
    np.testing.assert_array_equal(np.array([r.spikes for r in results]), reference.spikes[-1])
    if faults:
        assert stats.retransmissions > 0 and stats.bad_frames_received > 0   # the faults did bite
    else:
        assert stats.retransmissions == 0 and stats.frames_sent == len(images) + 1   # + the INFO


class LossyPort:
    """A board in process, behind an object that reads and writes like a serial port: it answers INFO
    and runs every INFER at once (its RESULT's label: the sum of the image's bytes, mod 3), but the
    replies to the INFERs it counts in ``lost`` (the first is 1) vanish on the line."""

    baudrate = 115200

    def __init__(self, *, lost):
        self.lost, self.infers = set(lost), 0
        self.parser, self.out = protocol.FrameParser(), bytearray()
        values = {name: 0 for name, _ in protocol.INFO_FIELDS}
        values.update(version=protocol.VERSION, input_bits=3, slots=3, lanes=4, inputs=16, classes=3, outputs=3,
                      max_chunk=64, clock_hz=12_000_000, baud=115200, network_sha256="00" * 32)
        self.info = protocol.info_payload(**values)

    def write(self, data):
        for frame in self.parser.feed(data):
            if frame.type == FrameType.INFO:
                self.out += protocol.encode_frame(frame.seq, FrameType.INFO_REPLY, self.info)
            elif frame.type == FrameType.INFER:
                self.infers += 1
                slot, image = frame.payload[0], frame.payload[protocol.CHUNK_HEADER:]
                if self.infers not in self.lost:
                    result = struct.pack("<BHIB", slot, sum(image) % 3, 100, 0)
                    self.out += protocol.encode_frame(frame.seq, FrameType.RESULT, result)
        return len(data)

    def read(self, size):
        if not self.out:
            time.sleep(0.001)      # a serial port's read timeout
        data, self.out[:size] = bytes(self.out[:size]), b""
        return data

    def close(self):
        pass


def test_a_board_whose_replies_are_lost_is_asked_again_at_its_measured_pace():
    """Images that fit one frame travel as INFERs alone; no LOAD is ever timed. Once INFERs have been
    timed, lost replies are asked for again within a few of their (here tiny) round trips, not after
    :attr:`Board.timeout` apiece: six lost in a row (three requests, then each of them once more) must
    not add up to the deadline."""
    from hone.host.board import Board

    images = np.random.default_rng(5).integers(0, 8, size=(12, 16))
    port = LossyPort(lost=range(7, 13))
    board = Board(port, timeout=1.0, deadline=2.5)
    results = list(board.infer(images))
    assert [r.index for r in results] == list(range(len(images)))
    assert [r.label for r in results] == [sum(protocol.pack_image(image, 3)) % 3 for image in images]
    assert board.stats.timeouts == 4 and board.stats.overtaken == 2 and port.infers == len(images) + 6


def test_a_12_bit_network_runs_on_the_simulated_board_and_a_wrong_baud_is_named(builds, tmp_path):
    """9..16-bit pixels travel packed (here 12 bits: 1.5 bytes a pixel) through the whole board under
    Verilator; a host at another standard rate gets an error naming both rates, not a timeout."""
    from hone.host.board import Board, LinkError
    from hone.host.infer import check_baud

    network = random_dense_network(np.random.default_rng(12), input_shape=(5, 5, 1), input_bits=12, widths=(16,),
                                   classes=4, nhot=2)
    path = tmp_path / "wide.hone"
    write_network(path, network)
    images = np.random.default_rng(6).integers(0, 1 << 12, size=(12, 25))
    images[::3, ::2] = 0
    reference = IntegerNetwork(network).run(images)
    with Board.open(f"sim:{path}", baud=1_500_000, lanes=4, clock_hz=12_000_000, slots=3, build_root=builds) as board:
        info = board.check(network)
        assert (info.input_bits, info.image_bytes) == (12, 38)
        results = list(board.infer(images))
        np.testing.assert_array_equal([r.label for r in results], reference.classes)
        np.testing.assert_array_equal(np.array([r.spikes for r in results]), reference.spikes[-1])
        board._port.baudrate = 115200           # as a host opened at the wrong rate
        with pytest.raises(LinkError, match=r"^simulated board \(.*\) answers at 1,500,000 baud, not at 115,200: pass "
                                            r"--baud 1500000 \(or --build DIR, the folder of its bitstream's report\)$"):
            check_baud(board, 115200)


def test_hone_infer_takes_the_baud_from_a_build_report(tmp_path, capsys):
    from hone.cli.main import main
    from hone.cli.infer import _build_report

    (tmp_path / "report.json").write_text(json.dumps({"baud": 3_000_000, "clock_hz": 45e6, "lanes": 4}))
    assert _build_report(tmp_path) == {"baud": 3_000_000, "clock_hz": 45e6, "lanes": 4}
    # the rate reaches the port: a port that does not exist says so, having been opened at it
    assert main(["infer", FASHION, "--port", "/dev/ttyNOPE9", "--build", str(tmp_path), "--images", "2"]) == 1
    assert "cannot open serial port '/dev/ttyNOPE9'" in capsys.readouterr().err
    assert main(["infer", FASHION, "--port", "/dev/ttyNOPE9", "--build", str(tmp_path / "none"), "--images", "2"]) == 2
    assert re.search(r"argument --build: .*none/report\.json not found: the output folder of hone build",
                     capsys.readouterr().err)


def test_board_refuses_another_network(small_net, builds):
    from hone.host.board import Board, LinkError

    _, path = small_net
    other = random_dense_network(np.random.default_rng(9), input_shape=(4, 4, 1), input_bits=3, widths=(12,),
                                 classes=3, nhot=2)
    with Board.open(f"sim:{path}", baud=1_500_000, lanes=4, clock_hz=12_000_000, slots=3,
                    build_root=builds) as board:
        with pytest.raises(LinkError, match=r"runs network [0-9a-f]{16}\.\.\., not [0-9a-f]{16}\.\.\. \(this network "
                                            r"file\): build and program the board for it"):
            board.check(other)


def test_board_open_errors(tmp_path):
    from hone.host.board import Board, LinkError

    with pytest.raises(LinkError, match=r"^cannot open serial port '/dev/ttyNOPE9': "):
        Board.open("/dev/ttyNOPE9")
    with pytest.raises(LinkError, match=r"^network file '.*missing\.hone' not found$"):
        Board.open(f"sim:{tmp_path / 'missing.hone'}")
    with pytest.raises(TypeError, match=r"^faults only apply to simulated boards"):
        Board.open("/dev/ttyNOPE9", faults=0.1)
    with pytest.raises(TypeError, match=r"^target only apply to simulated boards"):
        Board.open("/dev/ttyNOPE9", target="icebreaker")


def test_a_simulated_board_simulates_a_target_at_its_clock_and_rate():
    """No clock and no rate: the default target's design clock and the rate a build at it uses; a
    clock given: the target's rate at that clock; both given: as given."""
    from hone.boards.targets import TARGETS, DEFAULT_TARGET
    from hone.host.board import simulated_target

    target = TARGETS[DEFAULT_TARGET]
    assert simulated_target() == (target.clock_hz, target.uart().baud) == (45e6, 3_000_000)
    assert simulated_target("icebreaker") == (12e6, 1_500_000)
    assert simulated_target(clock_hz=30e6) == (30e6, 3_000_000)      # 10 clocks per bit
    assert simulated_target(clock_hz=12e6, baud=115200) == (12e6, 115200)


def test_hone_infer_cli(capsys):
    from hone.cli.main import main

    assert main(["infer", FASHION, "--sim", "--images", "6", "--json"]) == 0
    out = capsys.readouterr().out
    report = json.loads(out.strip().splitlines()[-1])
    assert report["equal"] and report["results"] == 6 and report["lost"] == 0 and report["duplicated"] == 0
    assert report["class_agreement"] == report["spike_agreement"] == 6
    assert 0 < report["line_rate_fraction"] <= 1.0
    # predictive frames: fewer bytes than zero runs, than the 798 of a raw frame, and the line-rate
    # limit follows them
    both = protocol.Encoding.ZERO_RUN | protocol.Encoding.PREDICTIVE
    assert report["encodings"] == both and report["raw_frame_bytes_up"] == 798
    from hone.network.datasets import network_test_images

    _, pixels, _, _ = network_test_images(FASHION, 6)
    sizes = {encodings: np.mean([protocol.request_frame_bytes(protocol.pack_image(image, 8), encodings=encodings,
                                                              row_bytes=28) for image in pixels])
             for encodings in (protocol.Encoding.ZERO_RUN, both)}
    assert report["frame_bytes_up"] == pytest.approx(sizes[both]) and sizes[both] < sizes[protocol.Encoding.ZERO_RUN]
    assert report["wire_bytes_up_per_image"] == pytest.approx(report["frame_bytes_up"], rel=0.01)
    # no board option: a simulated ULX3S-85F (the default target), at its 45 MHz and 3 Mbaud
    assert (report["clock_hz"], report["baud"]) == (45_000_000, 3_000_000)
    assert report["line_rate_limit"] == pytest.approx(3_000_000 / 10 / report["frame_bytes_up"])
    assert re.search(r"^bytes per image +\d+\.\d up on the wire \(retries included; \d+\.\d on a clean line, "
                     r"798 as raw frames, encoded where it pays\), 23 down$", out, re.M), out
    assert re.search(r"^line-rate limit +\d+\.\d\d images/s at 3,000,000 baud -> \d+\.\d% reached$", out, re.M), out
    assert re.search(r"^throughput +\d+\.\d\d images/s in board time \(\d+\.\d\d s at 45 MHz\)", out, re.M), out


def test_hone_infer_errors(capsys):
    from hone.cli.main import main

    assert main(["infer", FASHION, "--images", "2"]) == 2
    assert "give either --port PORT (a board) or --sim (a simulated board)" in capsys.readouterr().err
    assert main(["infer", FASHION, "--port", "/dev/ttyNOPE9", "--images", "2"]) == 1
    assert "hone: error: cannot open serial port '/dev/ttyNOPE9'" in capsys.readouterr().err
    assert main(["infer", FASHION, "--port", "/dev/ttyNOPE9", "--faults", "0.1", "--images", "2"]) == 2
    assert "argument --faults: applies to a simulated board (--sim) only" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit:
        main(["sim-board", FASHION, "--faults", "2"])
    assert exit.value.code == 2
    assert "argument --faults: expected a number in [0, 1), got 2" in capsys.readouterr().err
