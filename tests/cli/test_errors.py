"""Every failure of the ``hone`` command ends in one line and a non-zero exit, in bounded time.

Malformed network files (hypothesis mutates every field of a real one), out-of-range arguments,
broken build folders, a board that stops answering and one that disappears, and a bug in hone
itself. Exit status 2 is a usage error (as argparse's), 1 a failed run.
"""

import copy
import json
import os
import pathlib
import re
import threading
import time

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from hone.cli.main import main
from hone.rtl import protocol
from hone.network.netfile import NetworkFileError, canonical_hash, read_network

DATA = pathlib.Path(__file__).parents[1] / "data"
DIGITS = DATA / "digits-dense-4bit.hone"
DOCUMENT = json.loads(DIGITS.read_text())


def hone(capsys, *argv):
    """``main(argv)``'s exit status, stdout and stderr; argparse's exits count as statuses."""
    try:
        code = main([str(arg) for arg in argv])
    except SystemExit as exit:
        code = exit.code
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_error_line(code, err, expected_code):
    lines = err.strip().splitlines()
    assert code == expected_code, err
    assert len(lines) == 1 and lines[0].startswith("hone: error: "), err
    assert "internal error" not in err and "Traceback" not in err


# -- network files --------------------------------------------------------------------------------

def _paths(value, prefix=()):
    """Every path into a JSON document; of long lists only the list, its first, sixth and last element."""
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, prefix + (key,))
    elif isinstance(value, list):
        indices = range(len(value)) if len(value) <= 8 else (0, 5, len(value) - 1)
        for index in indices:
            yield from _paths(value[index], prefix + (index,))


PATHS = [path for path in _paths(DOCUMENT) if path]
HUGE = st.sampled_from([2 ** 63, -(2 ** 63) - 1, 10 ** 40, -(10 ** 40), 2 ** 62 + 1, -1, 0, 1 << 16, 10 ** 4000])
JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2 ** 70), 2 ** 70) | HUGE | st.floats(allow_nan=False)
    | st.text(max_size=6),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=4), children, max_size=3),
    max_leaves=8)


def _nested(depth):
    return {"a": _nested(depth - 1)} if depth else []


@st.composite
def malformed_documents(draw):
    document = copy.deepcopy(DOCUMENT)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(PATHS))
        parent = document
        try:
            for key in path[:-1]:
                parent = parent[key]
            current = parent[path[-1]]
        except (KeyError, IndexError, TypeError):
            continue     # an earlier mutation removed it
        action = draw(st.sampled_from(["replace", "delete", "shorten", "lengthen", "deep"]))
        if action == "delete":
            del parent[path[-1]]
        elif action == "shorten" and isinstance(current, list) and current:
            del current[draw(st.integers(0, len(current) - 1))]
        elif action == "lengthen" and isinstance(current, list):
            current.append(draw(JSON))
        elif action == "deep":
            parent[path[-1]] = _nested(draw(st.sampled_from([50, 400])))
        else:
            parent[path[-1]] = draw(JSON)
    if draw(st.booleans()) and isinstance(document, dict) and isinstance(document.get("network"), dict):
        try:   # past the hash check, so that every field's own validation runs
            document["sha256"] = canonical_hash(document["network"])
        except (TypeError, ValueError, RecursionError):
            pass
    return document


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(document=malformed_documents())
def test_malformed_network_files_are_one_line_naming_the_field(document, tmp_path, capsys):
    path = tmp_path / "net.hone"
    path.write_text(json.dumps(document))
    try:
        read_network(path)
        valid = True
    except NetworkFileError as error:
        valid = False
        assert str(error).startswith(f"{path}: ") and "\n" not in str(error)
    code, _, err = hone(capsys, "info", path)
    if valid:
        assert code == 0 and not err
    else:
        assert_one_error_line(code, err, 1)


@pytest.mark.parametrize("text, message", [
    (b"", r"invalid JSON"),
    (b"\xff\xfe", r"invalid JSON"),
    (b"[" * 100_000 + b"]" * 100_000, r"nested too deeply"),
    (b'{"format": "hone-network", "version": ' + b"9" * 5000 + b"}", r"not a hone network file"),
    (b'{"format": "hone-network", "version": 3}', r"version: format version 3 is newer than this hone reads"),
    (b'{"format": "hone-network", "version": 0}', r"version: invalid format version 0"),
    (b'{"format": "hone-network", "version": 1.0}', r"version: expected int, got float 1\.0"),
    (b'{"format": [1, 2]}', r"format: expected 'hone-network', got \[1, 2\]"),
])
def test_unreadable_network_files(tmp_path, capsys, text, message):
    path = tmp_path / "net.hone"
    path.write_bytes(text)
    code, _, err = hone(capsys, "info", path)
    assert_one_error_line(code, err, 1)
    assert re.search(message, err), err


def _rehashed(tmp_path, edit):
    document = copy.deepcopy(DOCUMENT)
    edit(document["network"])
    document["sha256"] = canonical_hash(document["network"])
    path = tmp_path / "net.hone"
    path.write_text(json.dumps(document))
    return path


@pytest.mark.parametrize("edit, message", [
    (lambda n: n["layers"][1]["weights"].__setitem__(5, "7"),
     r"network\.layers\[1\]\.weights\[5\]: expected an integer, got str \"7\""),
    (lambda n: n["layers"][1]["weights"].__setitem__(5, 2 ** 63),
     r"network\.layers\[1\]\.weights\[5\]: 9223372036854775808 is outside -7\.\.7"),
    (lambda n: n["layers"][0]["thresholds"].__setitem__(3, 10 ** 40),
     r"network\.layers\[0\]\.thresholds\[3\]: 1{1}0{40} is outside"),
    (lambda n: n["layers"][2]["weights"].__setitem__(0, None),
     r"network\.layers\[2\]\.weights\[0\]: expected an integer, got NoneType null"),
    (lambda n: n["input"]["shape"].__setitem__(1, 10 ** 12),
     r"network\.input\.shape\[1\]: 1000000000000 is outside 1\.\.65536"),
    (lambda n: n["output"]["key"][2].__setitem__(0, 2),
     r"network\.output\.key\[2\]\[0\]: expected 0 or 1, got 2"),
    (lambda n: n["layers"].__setitem__(1, [1, 2]),
     r"network\.layers\[1\]: expected an object, got list \[1, 2\]"),
])
def test_errors_name_the_element(tmp_path, capsys, edit, message):
    path = _rehashed(tmp_path, edit)
    code, _, err = hone(capsys, "info", path)
    assert_one_error_line(code, err, 1)
    assert re.search(message, err), err


@pytest.mark.parametrize("command", [
    ["info"], ["rtl", "-o", "{tmp}/x.v"], ["sim", "--simulator", "icarus", "--build-dir", "{tmp}/b"],
    ["sim-board", "--simulator", "icarus", "--build-dir", "{tmp}/b"], ["infer", "--sim", "--build-dir", "{tmp}/b"],
    ["build", "--board", "icebreaker", "-o", "{tmp}/b"],
])
def test_every_subcommand_refuses_a_bad_network_file_in_one_line(tmp_path, capsys, command):
    path = _rehashed(tmp_path, lambda n: n["layers"][1]["weights"].__setitem__(5, 99))
    argv = [command[0], path] + [arg.format(tmp=tmp_path) for arg in command[1:]]
    code, _, err = hone(capsys, *argv)
    assert_one_error_line(code, err, 1)
    assert "network.layers[1].weights[5]: 99 is outside -7..7" in err
    assert not (tmp_path / "b").exists()


# -- arguments ------------------------------------------------------------------------------------

NETWORK_COMMANDS = {
    "sim": ["--simulator", "icarus"], "infer": ["--sim"], "rtl": ["-o", "x.v"], "sim-board": [],
    "build": ["--board", "icebreaker", "-o", "b"],
}
BAD_VALUES = {   # option -> (commands, a strategy of values outside its range)
    "--lanes": (["sim", "infer", "rtl", "sim-board", "build"],
                st.integers(max_value=0) | st.integers(129, 10 ** 30) | st.sampled_from(["x", "1.5", "", "nan"])),
    "--images": (["sim", "infer", "build"], st.integers(max_value=0) | st.integers(361, 10 ** 30)
                 | st.sampled_from(["many", "1e3"])),
    "--jobs": (["sim"], st.integers(max_value=0)),
    "--backpressure": (["sim"], st.floats(1.0, 1e300) | st.floats(max_value=-1e-9) | st.sampled_from(["nan", "inf"])),
    "--faults": (["infer", "sim-board"], st.floats(1.0, 1e300) | st.floats(max_value=-1e-9)
                 | st.sampled_from(["nan", "-inf"])),
    "--slots": (["infer", "sim-board"], st.integers(max_value=0) | st.integers(256, 10 ** 9)),
    "--clock": (["infer", "sim-board", "build"], st.floats(max_value=0.0) | st.sampled_from(["nan", "inf", "fast"])),
    "--chunk": (["infer"], st.integers(max_value=0)),
    "--deadline": (["infer"], st.floats(max_value=0.0) | st.sampled_from(["nan", "soon"])),
}


@st.composite
def bad_arguments(draw):
    option = draw(st.sampled_from(sorted(BAD_VALUES)))
    commands, values = BAD_VALUES[option]
    return draw(st.sampled_from(commands)), option, str(draw(values))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=bad_arguments())
def test_out_of_range_arguments_are_usage_errors_before_any_work(case, tmp_path, capsys, monkeypatch):
    command, option, value = case
    monkeypatch.chdir(tmp_path)
    code, out, err = hone(capsys, command, DIGITS.resolve(), *NETWORK_COMMANDS[command], f"{option}={value}",
                          "--build-dir" if command in ("sim", "infer", "sim-board") else "--json",
                          *(["build-dir"] if command in ("sim", "infer", "sim-board") else []))
    assert_one_error_line(code, err, 2)
    assert option in err
    assert list(tmp_path.iterdir()) == []       # nothing was built or written


def test_unwritable_outputs_are_one_line_naming_the_file(capsys, tmp_path):
    (tmp_path / "file").write_text("")
    code, _, err = hone(capsys, "rtl", DIGITS, "-o", tmp_path / "file" / "core.v")
    assert_one_error_line(code, err, 1)
    assert f"{tmp_path / 'file'}: exists and is not a folder" in err
    code, _, err = hone(capsys, "sim", DIGITS, "--simulator", "icarus", "--images", "2", "--build-dir",
                        tmp_path / "file")
    assert_one_error_line(code, err, 1)
    assert str(tmp_path / "file") in err


@pytest.mark.parametrize("command", [
    ["rtl", "-o", "{tmp}/x.v"], ["sim", "--simulator", "icarus", "--images", "2", "--build-dir", "{tmp}/b"],
    ["infer", "--sim", "--simulator", "icarus", "--images", "2", "--build-dir", "{tmp}/b"],
    ["build", "--board", "icebreaker", "-o", "{tmp}/b"],
])
def test_a_valid_file_the_core_cannot_run_is_refused_before_any_build(tmp_path, capsys, command):
    import numpy as np

    from hone.network.random import random_conv_network
    from hone.network.netfile import write_network

    network = random_conv_network(np.random.default_rng(0), stages=(("pool", 2), ("conv", 2, 3, "same")), widths=(4,))
    write_network(tmp_path / "net.hone", network, meta={"dataset": "digits"})
    code, _, err = hone(capsys, command[0], tmp_path / "net.hone", *[arg.format(tmp=tmp_path) for arg in command[1:]])
    assert_one_error_line(code, err, 1)
    assert "layer 'pool_0' is maxpool2d after the input" in err
    assert not (tmp_path / "b").exists() or not any((tmp_path / "b").rglob("*.v"))


@pytest.mark.parametrize("dataset", ["imagenet", 5, None, ["digits"]])
@pytest.mark.parametrize("command", [["sim", "--simulator", "icarus"], ["infer", "--sim", "--simulator", "icarus"]])
def test_a_data_set_the_file_names_but_hone_lacks_is_one_line(tmp_path, capsys, dataset, command):
    document = copy.deepcopy(DOCUMENT)
    document["meta"]["dataset"] = dataset
    (tmp_path / "net.hone").write_text(json.dumps(document))
    code, _, err = hone(capsys, command[0], tmp_path / "net.hone", *command[1:], "--images", "2",
                        "--build-dir", tmp_path / "b")
    assert_one_error_line(code, err, 1)
    assert "--dataset" in err
    assert not (tmp_path / "b").exists()


def test_default_lanes_are_capped_at_the_widest_layer(capsys, tmp_path):
    import numpy as np

    from hone.network.random import random_dense_network
    from hone.network.netfile import write_network

    write_network(tmp_path / "small.hone", random_dense_network(np.random.default_rng(0), widths=(5,), classes=2,
                                                               nhot=2))
    code, out, err = hone(capsys, "rtl", tmp_path / "small.hone", "-o", tmp_path / "x.v", "--json")
    assert code == 0, err
    assert json.loads(out.strip().splitlines()[-1])["plan"]["lanes"] == 5
    code, _, err = hone(capsys, "rtl", tmp_path / "small.hone", "-o", tmp_path / "x.v", "--lanes", "6")
    assert_one_error_line(code, err, 2)


def test_lanes_beyond_the_widest_layer_name_it(capsys, tmp_path):
    code, _, err = hone(capsys, "rtl", DIGITS, "--lanes", "100000", "-o", tmp_path / "x.v")
    assert_one_error_line(code, err, 2)
    assert ("argument --lanes: expected 1..128 for this network (its widest layer, layers[0] 'dense_0', has "
            "128 neurons; more lanes would stay idle), got 100000") in err


# -- build folders ------------------------------------------------------------------------------------

@pytest.mark.parametrize("report, message", [
    (None, r"report\.json not found: run hone build"),
    ("{", r"report\.json is not valid JSON"),
    ("[1, 2]", r"report\.json: expected an object"),
    ('{"board": 5}', r"report\.json: board: expected a board name"),
    ('{"board": "nope", "bitstream": "x.bit"}', r"unknown board 'nope'"),
    ('{"board": "icebreaker"}', r"report\.json: bitstream: expected a file name"),
    ('{"board": "icebreaker", "bitstream": "top.bin"}', r"bitstream .*top\.bin not found"),
])
def test_program_refuses_a_broken_build_folder(tmp_path, capsys, report, message):
    if report is not None:
        (tmp_path / "report.json").write_text(report)
    code, _, err = hone(capsys, "program", tmp_path, "--dry-run")
    assert_one_error_line(code, err, 1)
    assert re.search(message, err), err


# -- the link -------------------------------------------------------------------------------------

class SilentBoard:
    """The far end of a pseudo-terminal: answers INFO like a board running ``network``, and then,
    after ``then`` more frames, either goes silent (``"silent"``) or closes its end (``"unplug"``)."""

    def __init__(self, network, *, then="silent", after=0):
        self.master, self.slave = os.openpty()   # the slave stays open: a pty with no slave reads EIO
        self.path = os.ttyname(self.slave)
        values = {name: 0 for name, _ in protocol.INFO_FIELDS}
        values.update(version=protocol.VERSION, input_bits=network.input.bits, slots=2, lanes=8,
                      inputs=network.input.size, classes=network.output.key.shape[0],
                      outputs=network.output.key.shape[1], max_chunk=64, clock_hz=12_000_000, baud=115200,
                      network_sha256=network.sha256)
        self.info = protocol.info_payload(**values)
        self.then, self.after = then, after
        self.stop = False
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    def serve(self):
        import select

        parser, seen = protocol.FrameParser(), 0
        while not self.stop:
            if not select.select([self.master], [], [], 0.05)[0]:
                continue
            try:
                data = os.read(self.master, 4096)
            except OSError:
                return
            for frame in parser.feed(data):
                if not isinstance(frame, protocol.Frame):
                    continue
                if frame.type == protocol.FrameType.INFO:
                    os.write(self.master, protocol.encode_frame(frame.seq, protocol.FrameType.INFO_REPLY, self.info))
                    continue
                seen += 1
                if seen > self.after and self.then == "unplug":
                    os.close(self.master)
                    return

    def close(self):
        self.stop = True
        self.thread.join(timeout=5)
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass


def test_a_serial_board_is_given_up_within_a_minute_by_default():
    from hone.host.board import Board

    master, slave = os.openpty()
    try:
        with Board.open(os.ttyname(slave)) as board:
            assert 0 < board.deadline <= 60 and board.baud == 115200
    finally:
        os.close(master)
        os.close(slave)


def test_a_board_that_stops_answering_is_given_up_after_the_deadline(capsys):
    network, _ = read_network(DIGITS)
    board = SilentBoard(network)
    try:
        started = time.monotonic()
        code, _, err = hone(capsys, "infer", DIGITS, "--port", board.path, "--images", "5", "--deadline", "2",
                            "--json")
        took = time.monotonic() - started
    finally:
        board.close()
    assert_one_error_line(code, err, 1)
    assert re.search(r"answered nothing for \d+ s \(deadline 2 s\) while \d+ requests? waited \(0 of 5 "
                     r"results in; \d+ retransmissions, \d+ timeouts, 0 bad frames, 0 stale replies, errors none\): "
                     r"the board stopped answering", err), err
    assert took < 15


def test_a_board_that_never_answers_info_is_given_up_after_the_deadline():
    from hone.host.board import Board, LinkError

    master, slave = os.openpty()
    try:
        started = time.monotonic()
        with Board.open(os.ttyname(slave), deadline=1.5) as board:
            with pytest.raises(LinkError, match=r"answered nothing for \d+ s \(deadline 1\.5 s\) while waiting for INFO"):
                board.info()
        assert time.monotonic() - started < 5
    finally:
        os.close(master)
        os.close(slave)


def test_a_board_that_disappears_is_a_link_error_naming_the_port(capsys):
    network, _ = read_network(DIGITS)
    board = SilentBoard(network, then="unplug", after=2)
    try:
        code, _, err = hone(capsys, "infer", DIGITS, "--port", board.path, "--images", "5", "--deadline", "10",
                            "--json")
    finally:
        board.close()
    assert_one_error_line(code, err, 1)
    assert f"hone: error: {board.path}: the serial port failed: " in err
    assert "the board was unplugged or lost power, or another program took the port" in err


# -- the error boundary ---------------------------------------------------------------------------

def test_a_bug_in_hone_is_one_line_and_a_log_with_the_traceback(capsys, monkeypatch):
    from hone.cli import info as info_cli

    def broken(args):
        raise RuntimeError("the network exploded\nsecond line")

    monkeypatch.setattr(info_cli, "cmd_info", broken)
    code, _, err = hone(capsys, "info", DIGITS)
    assert code == 1
    match = re.fullmatch(r"hone: internal error: RuntimeError: the network exploded \(the traceback is in "
                         r"(\S+\.log); please report it\)\n", err)
    assert match, err
    log = pathlib.Path(match.group(1)).read_text()
    assert "Traceback (most recent call last)" in log and "in broken" in log and "second line" in log
    pathlib.Path(match.group(1)).unlink()
