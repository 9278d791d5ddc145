"""Talking to a board over serial: :class:`Board`, the host half of the protocol in :mod:`hone.rtl.protocol`.

The same code drives a real board (``/dev/ttyUSB0``) and a simulated one (``sim:net.hone``: the whole
``hone_board`` top level in a cycle-accurate simulator behind a pseudo-terminal, see :mod:`hone.sim.board`).

:meth:`Board.infer` keeps every image slot of the board busy: each image goes into a free slot as
LOAD chunks and a final INFER, and the slot is reused only after its RESULT. Requests are idempotent
(a chunk write, a re-run of a slot), so any request whose reply does not come is simply sent again:
on an ERROR, on a later request's reply overtaking it (replies to writes and results to inferences
each come in order), or on a timeout that adapts to the measured round trip. Chunks shrink when
frames keep failing and grow back when they stop, so a noisy line still gets images through. Every
image yields exactly one result, in order.

Every failure ends in :class:`LinkError`, in bounded time: a port that fails (unplugged, powered off,
taken by another program) at once, and a board that stops answering once no request has been
answered for :attr:`Board.deadline` seconds (default :data:`DEADLINE` for a serial port,
:data:`SIM_DEADLINE` for a simulated board), however many retries were still allowed.
"""

import collections
import contextlib
import dataclasses
import time

import numpy as np

from hone.rtl import protocol
from hone.rtl.protocol import ErrorCode, Frame, FrameType
from hone.network.errors import HoneError

__all__ = ["Board", "LinkError", "InferResult", "LinkStats", "line_rate_limit", "simulated_target"]

MIN_CHUNK = 16
DEADLINE = 30.0        # s without an answered request before a board is given up
SIM_DEADLINE = 120.0   # a simulated board runs thousands of times slower than a real one
SERIAL_BAUD = 115200   # the line rate a serial port opens at when none is given


class LinkError(HoneError, RuntimeError):
    """The board cannot be reached, does not answer, or runs something else."""


@dataclasses.dataclass(frozen=True)
class InferResult:
    index: int
    label: int | None      # the class; None for a network without classes (its output is ``spikes``)
    cycles: int
    spikes: np.ndarray
    attempts: int          # INFER frames sent for this image (1 when nothing was lost)
    slot: int = 0


@dataclasses.dataclass
class LinkStats:
    frames_sent: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    retransmissions: int = 0
    timeouts: int = 0
    overtaken: int = 0
    errors: dict = dataclasses.field(default_factory=dict)
    bad_frames_received: int = 0
    stale_replies: int = 0
    chunk: int = 0

    def as_dict(self):
        return dataclasses.asdict(self)


def line_rate_limit(info, images=None):
    """:func:`hone.rtl.protocol.line_rate` for the board that sent ``info``: with ``images`` (integer
    pixels, ``(n, inputs)``), for their mean bytes on the wire as this host sends them on a clean line
    (one INFER frame each, in the shortest encoding the board decodes, escapes included)."""
    up = None
    if images is not None and len(images):
        up = float(np.mean([protocol.request_frame_bytes(protocol.pack_image(image, info.input_bits),
                                                         encodings=info.encodings, row_bytes=info.row_bytes)
                            for image in np.asarray(images).reshape(len(images), -1)]))
    return protocol.line_rate(baud=info.baud, image_bytes=info.image_bytes, outputs=info.outputs, up=up)


@dataclasses.dataclass
class _Request:
    seq: int
    type: int
    slot: int
    offset: int
    data: bytes
    job: object = None
    sent_at: float = 0.0
    attempts: int = 0
    order: int = 0          # send order, to see which replies overtook it
    busy: bool = False


class _Job:
    def __init__(self, index, data, slot):
        self.index, self.data, self.slot = index, data, slot
        self.loads = set()       # outstanding LOAD requests
        self.infer = None        # the INFER request, once planned
        self.infer_queued = False
        self.infer_attempts = 0


class Board:
    """One board behind a serial port.

    Use :meth:`open`; ``with Board.open(url) as board: ...`` closes it (and stops a simulated board).
    """

    def __init__(self, port, *, timeout=1.0, deadline=DEADLINE, process=None, description=None):
        self._port = port
        self._process = process
        self.description = description or str(getattr(port, "port", port))
        self.timeout = float(timeout)
        if not deadline > 0:
            raise ValueError(f"'deadline' must be a number of seconds > 0, not {deadline!r}")
        self.deadline = float(deadline)
        self._answered = time.monotonic()   # when a request was last answered (the deadline's clock)
        self._parser = protocol.FrameParser()
        self._seq = 0
        self._order = 0
        self._srtt = {}          # request type -> (smoothed reply time, its variation)
        self._progress = 0.0     # when the last reply came
        self.stats = LinkStats()
        self.info_cache = None
        self.simulation = None

    # -- opening ------------------------------------------------------------------------------------

    @classmethod
    def open(cls, url, *, baud=None, timeout=None, deadline=None, target=None, **simulation):
        """Open ``url``: a serial device (``/dev/ttyUSB0``, ``serial:/dev/ttyUSB0``, any pyserial URL)
        at ``baud`` (default :data:`SERIAL_BAUD`), or ``sim:NETWORK.hone``, which starts a simulated
        board (:func:`hone.sim.launch.start_board`; keywords: ``simulator``, ``lanes``, ``clock_hz``,
        ``slots``, ``faults``, ``seed``, ``build_root``, ``log``).

        A simulated board simulates the board ``target`` (a name in :data:`hone.boards.targets.TARGETS`,
        default :data:`~hone.boards.targets.DEFAULT_TARGET`): its design clock and line rate unless
        ``clock_hz`` or ``baud`` say otherwise (:func:`simulated_target`); ``lanes`` defaults to
        :data:`hone.rtl.plan.DEFAULT_LANES`, capped at the network's widest layer.

        ``deadline``: seconds without an answered request before :class:`LinkError` (default
        :data:`DEADLINE`, or :data:`SIM_DEADLINE` for a simulated board).

        Raises:
            LinkError: The port cannot be opened, or the simulated board does not start.
            TypeError: Simulation keywords (or ``target``) for a serial port.
        """
        import serial

        if url.startswith("sim:"):
            from hone.sim.runner import SimulationError
            from hone.sim.launch import start_board

            network_path = url[4:]
            clock_hz, baud = simulated_target(target, clock_hz=simulation.pop("clock_hz", None), baud=baud)
            try:
                if simulation.get("lanes") is None:
                    simulation["lanes"] = _default_lanes(network_path)
                process = start_board(network_path, clock_hz=clock_hz, baud=baud, **simulation)
            except SimulationError as error:
                raise LinkError(str(error)) from None
            try:
                port = serial.Serial(process.pty, baudrate=baud, timeout=0.002, write_timeout=None)
            except (serial.SerialException, OSError, ValueError) as error:
                process.stop(timeout=0)
                raise LinkError(f"cannot open the simulated board's port {process.pty!r}: {error}") from None
            return cls(port, timeout=timeout or 10.0, deadline=deadline or SIM_DEADLINE, process=process,
                       description=f"simulated board ({network_path}, log {process.log})")
        if simulation or target is not None:
            given = [*(["target"] if target is not None else []), *simulation]
            raise TypeError(f"{', '.join(given)} only apply to simulated boards (sim:...)")
        path = url[len("serial:"):] if url.startswith("serial:") else url
        baud = SERIAL_BAUD if baud is None else baud
        try:
            port = serial.serial_for_url(path, baudrate=baud, timeout=0.002)
            port.reset_input_buffer()
        except (serial.SerialException, OSError, ValueError) as error:
            raise LinkError(f"cannot open serial port {path!r}: {error}") from None
        return cls(port, timeout=timeout or 1.0, deadline=deadline or DEADLINE, description=path)

    def close(self):
        """Close the port; a simulated board is asked to stop, and its figures land in
        :attr:`simulation` (simulated time, bytes each way, faults injected each way)."""
        if self._port is not None:
            try:
                self._port.close()
            except OSError:      # a port that is already gone has nothing left to close
                pass
            self._port = None
        if self._process is not None:
            self.simulation = self._process.stop()
            self._process = None

    @property
    def baud(self):
        """The rate the port runs at (baud)."""
        return self._port.baudrate

    def _exited(self):
        """The simulated board's exit status once its process has ended; None while it runs (or for a
        serial port)."""
        return None if self._process is None else self._process.returncode()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- frames -------------------------------------------------------------------------------------

    def _next_seq(self, busy):
        # 65536 numbers go round before one is reused, so a late reply cannot be taken for another's
        for _ in range(1 << 16):
            self._seq = (self._seq + 1) % (1 << 16)
            if self._seq not in busy:
                return self._seq
        raise LinkError("all sequence numbers are in flight")

    def _send(self, request):
        type, payload = request.type, b""
        if request.type in (FrameType.LOAD, FrameType.INFER):
            # the shortest encoding the board decodes: raw, zero runs or predictive (replies are the same)
            info = self.info_cache
            type, data = protocol.image_request(request.data, final=request.type == FrameType.INFER,
                                                encodings=info.encodings if info else 0,
                                                row_bytes=info.row_bytes if info else 0)
            payload = protocol.chunk_payload(request.slot, request.offset, data)
        frame = protocol.encode_frame(request.seq, type, payload)
        with self._port_errors():
            self._port.write(frame)
        self._order += 1
        request.order = self._order
        request.sent_at = time.monotonic()
        request.attempts += 1
        self.stats.frames_sent += 1
        self.stats.bytes_sent += len(frame)

    @contextlib.contextmanager
    def _port_errors(self):
        """Every failure of the port (pyserial's or the OS's) as one :class:`LinkError`."""
        import serial

        try:
            yield
        except (serial.SerialException, OSError) as error:
            reason = str(error).strip() or type(error).__name__
            if self._exited() is not None:
                raise LinkError(f"{self.description} exited with status {self._exited()} ({reason})") from None
            raise LinkError(f"{self.description}: the serial port failed: {reason}; the board was "
                            f"unplugged or lost power, or another program took the port") from None

    def _check_deadline(self, waiting):
        """Give up once no request has been answered for :attr:`deadline` seconds. ``waiting``: what
        waited, a string or a function that says it (called only to give up, off the polling path)."""
        silent = time.monotonic() - self._answered
        if silent > self.deadline:
            waiting = waiting() if callable(waiting) else waiting
            if self._exited() is not None:
                raise LinkError(f"{self.description} exited with status {self._exited()}")
            raise LinkError(f"{self.description} answered nothing for {silent:.0f} s (deadline "
                            f"{self.deadline:g} s) while {waiting}: the board stopped answering; check its "
                            f"power and cable, that it runs a hone bitstream, and the baud rate "
                            f"({getattr(self._port, 'baudrate', '?')})")

    def _receive(self):
        with self._port_errors():
            data = self._port.read(4096)
        if not data:
            return []
        self.stats.bytes_received += len(data)
        frames = []
        for frame in self._parser.feed(data):
            if isinstance(frame, Frame):
                frames.append(frame)
            else:
                self.stats.bad_frames_received += 1
        return frames

    def _sample(self, request):
        """Estimate how long a reply takes once the board is on it (TCP's estimator, Karn's rule).

        Time is counted from the request's send or the previous reply, whichever is later: with a
        window of requests queued, that is what one reply costs, whatever the line's real speed (a
        simulated board may run far slower than its baud rate)."""
        now = time.monotonic()
        start, self._progress = max(request.sent_at, self._progress), now
        self._answered = now
        if request.attempts != 1:
            return
        rtt = now - start
        srtt, rttvar = self._srtt.get(request.type, (None, 0.0))
        if srtt is None:
            srtt, rttvar = rtt, rtt / 2
        else:
            rttvar = 0.75 * rttvar + 0.25 * abs(srtt - rtt)
            srtt = 0.875 * srtt + 0.125 * rtt
        self._srtt[request.type] = srtt, rttvar

    def _rto(self, type):
        """Retransmission timeout for a request type (results wait for inferences, ACKs do not).

        :attr:`timeout` until the type's reply time is measured; but a LOAD takes the INFER's estimate
        once there is one: an INFER's reply follows the same write and then a run, so it bounds a
        LOAD's, and an image that fits one frame travels as INFERs alone (its LOADs' :attr:`timeout`
        would stretch every wait of :meth:`infer`, which judges the two together)."""
        if type == FrameType.LOAD and type not in self._srtt and FrameType.INFER in self._srtt:
            type = FrameType.INFER
        if type not in self._srtt:
            return self.timeout
        srtt, rttvar = self._srtt[type]
        return min(max(2 * srtt + 4 * rttvar, 0.05), 60.0)

    # -- requests -----------------------------------------------------------------------------------

    def info(self, *, attempts=40):
        """The board's INFO (protocol version, network hash, geometry, counters).

        Raises:
            LinkError: No INFO reply after ``attempts`` requests or within :attr:`deadline` seconds.
        """
        request = _Request(self._next_seq(()), FrameType.INFO, 0, 0, b"")
        self._answered = time.monotonic()
        while request.attempts < attempts:
            self._check_deadline("waiting for INFO")
            self._send(request)
            # until a round trip has been measured, allow the whole timeout; then a few RTOs
            deadline = time.monotonic() + (3 * self._rto(FrameType.INFO) if self._srtt.get(FrameType.INFO)
                                           else self.timeout)
            bad = self.stats.bad_frames_received
            while time.monotonic() < deadline:
                if self.stats.bad_frames_received != bad:   # perhaps our reply, damaged: ask again
                    break
                for frame in self._receive():
                    if frame.seq == request.seq and frame.type == FrameType.INFO_REPLY:
                        self._sample(request)
                        try:
                            self.info_cache = protocol.parse_info(frame.payload)
                        except protocol.ProtocolError as error:
                            raise LinkError(f"{self.description}: {error}") from None
                        return self.info_cache
                    if frame.seq == request.seq and frame.type == FrameType.ERROR:
                        deadline = 0   # send again now
                        break
            self.stats.retransmissions += 1
        raise LinkError(f"no INFO reply from {self.description} after {request.attempts} attempts: check the "
                        f"port, the baud rate ({getattr(self._port, 'baudrate', '?')}) and that the board is "
                        f"programmed with a hone bitstream")

    def probe_baud(self, *, exclude=None, rates=None, attempts=2):
        """The line rate the board answers INFO at, trying ``rates`` (default: every board target's and
        115200, fastest first) but ``exclude``; None when none answers. The port is left at the rate
        found, or back at its own."""
        if rates is None:
            from hone.boards.targets import TARGETS

            rates = sorted({target.uart().baud for target in TARGETS.values()} | {115200}, reverse=True)
        own, timeout = self._port.baudrate, self.timeout
        self.timeout = min(self.timeout, 2.0)
        try:
            for rate in rates:
                if rate == exclude:
                    continue
                with self._port_errors():
                    self._port.baudrate = rate
                    time.sleep(0.05)
                    self._port.reset_input_buffer()
                self._parser = protocol.FrameParser()
                try:
                    self.info(attempts=attempts)
                except LinkError:
                    continue
                return rate
            with self._port_errors():
                self._port.baudrate = own
            return None
        finally:
            self.timeout = timeout

    def check(self, network):
        """Refuse to go on unless the board runs ``network`` (by content hash)."""
        info = self.info_cache or self.info()
        if info.network_sha256 != network.sha256:
            raise LinkError(f"{self.description} runs network {info.network_sha256[:16]}..., not "
                            f"{network.sha256[:16]}... (this network file): build and program the board "
                            f"for it, or pass the network it runs")
        if info.inputs != network.input.size or info.input_bits != network.input.bits:
            raise LinkError(f"{self.description} takes {info.inputs} x {info.input_bits}-bit inputs, the "
                            f"network {network.input.size} x {network.input.bits}-bit")
        return info

    def infer(self, images, *, chunk=None, window=32, max_attempts=200):
        """Run integer ``images`` (``(n, inputs)``, or any shape with ``n`` first) on the board.

        Yields one :class:`InferResult` per image, in order. ``chunk`` fixes the bytes per frame
        (default: adaptive, starting from the board's ``max_chunk``); at most ``window`` frames are
        unanswered at a time. Raises :class:`LinkError` when a request has gone unanswered
        ``max_attempts`` times, when no request has been answered for :attr:`deadline` seconds, or
        when the port fails.
        """
        info = self.info_cache or self.info()
        images = np.asarray(images)
        images = images.reshape(len(images), -1)
        if images.shape[1] != info.inputs:
            raise ValueError(f"images have {images.shape[1]} pixels, the board takes {info.inputs}")
        packed = [protocol.pack_image(image, info.input_bits) for image in images]
        adaptive = chunk is None
        size = min(int(chunk or info.max_chunk), info.max_chunk)
        if size < 1:
            raise ValueError(f"chunk must be at least 1 byte, got {chunk}")
        streak = 0
        free = collections.deque(range(info.slots))
        outstanding = {}                 # seq -> _Request
        to_send = collections.deque()    # requests to (re)send, oldest first
        done = {}
        next_image = next_result = 0

        def plan(job, start, stop, final):
            """LOAD requests for bytes start..stop of the job's image (chunked), + INFER if final."""
            pieces = [(offset, min(offset + size, stop)) for offset in range(start, stop, size)] or [(start, start)]
            if final:               # the INFER carries the last piece, and goes after the LOADs' ACKs
                *loads, last = pieces
            else:
                loads, last = pieces, None
            for begin, end in loads:
                if end > begin:
                    request = _Request(0, FrameType.LOAD, job.slot, begin, job.data[begin:end], job)
                    job.loads.add(id(request))
                    to_send.append(request)
            if last is not None:
                job.infer = _Request(0, FrameType.INFER, job.slot, last[0], job.data[last[0]:last[1]], job)
                job.infer_queued = not job.loads
                if job.infer_queued:
                    to_send.append(job.infer)

        def resend(request, reason):
            nonlocal size, streak
            if request.attempts >= max_attempts:
                raise LinkError(f"{FrameType(request.type).name} for image {request.job.index} (slot "
                                f"{request.slot}) unanswered after {request.attempts} attempts; last: {reason}")
            outstanding.pop(request.seq, None)
            self.stats.retransmissions += 1
            if adaptive and reason not in ("busy", "timeout"):   # a slow board is not a noisy line
                size = max(MIN_CHUNK, size // 2)
                streak = 0
            job = request.job
            if len(request.data) > size:     # too long for this line: split what it carried
                if request.type == FrameType.INFER:
                    job.infer = None
                else:
                    job.loads.discard(id(request))
                plan(job, request.offset, request.offset + len(request.data), request.type == FrameType.INFER)
                if request.type == FrameType.INFER:   # its LOADs go first; the INFER follows their ACKs
                    return
            else:
                to_send.appendleft(request)

        self._answered = time.monotonic()
        while next_result < len(images):
            stats = self.stats
            self._check_deadline(lambda: f"{len(outstanding)} request{'s' if len(outstanding) != 1 else ''} waited "
                                         f"({len(done) + next_result} of {len(images)} results in; "
                                         f"{stats.retransmissions} retransmissions, {stats.timeouts} timeouts, "
                                         f"{stats.bad_frames_received} bad frames, {stats.stale_replies} stale "
                                         f"replies, errors {stats.errors or 'none'})")
            # new images into free slots
            while free and next_image < len(images):
                job = _Job(next_image, packed[next_image], free.popleft())
                plan(job, 0, len(job.data), final=True)
                next_image += 1
            # send what is due
            now = time.monotonic()
            while to_send and len(outstanding) < window:
                request = to_send.popleft()
                if request.type == FrameType.INFER and request.job.loads:
                    request.job.infer_queued = False   # queued again when its last LOAD is acknowledged
                    continue
                request.seq = self._next_seq(outstanding)
                outstanding[request.seq] = request
                if request.type == FrameType.INFER:
                    request.job.infer_attempts += 1
                self._send(request)
            # replies
            for frame in self._receive():
                request = outstanding.get(frame.seq)
                if request is None:
                    self.stats.stale_replies += 1
                    continue
                if frame.type == FrameType.ERROR:
                    self._progress = time.monotonic()
                    code = ErrorCode(frame.payload[0]) if frame.payload and frame.payload[0] in set(ErrorCode) else None
                    name = code.name if code else f"code {frame.payload.hex()}"
                    self.stats.errors[name] = self.stats.errors.get(name, 0) + 1
                    if code == ErrorCode.BUSY:   # nothing was done: send again when its turn times out
                        request.busy = True
                        continue
                    resend(request, f"ERROR {name}")
                    continue
                expected = {FrameType.LOAD: FrameType.ACK, FrameType.INFER: FrameType.RESULT}.get(request.type)
                if frame.type != expected:
                    self.stats.stale_replies += 1
                    continue
                del outstanding[frame.seq]
                self._sample(request)
                streak += 1
                if adaptive and streak >= 32 and size < info.max_chunk:
                    size, streak = min(info.max_chunk, size * 2), 0
                job = request.job
                # replies to writes come in order, and so do results: anything of the same kind sent
                # before this one and still unanswered was lost
                for other in list(outstanding.values()):
                    if other.type == request.type and other.order < request.order:
                        self.stats.overtaken += 1
                        resend(other, "overtaken")
                if request.type == FrameType.LOAD:
                    job.loads.discard(id(request))
                    if not job.loads and job.infer is not None and not job.infer_queued:
                        job.infer_queued = True
                        to_send.append(job.infer)
                    continue
                result = protocol.parse_result(frame.payload, info.outputs)
                if result.slot != job.slot:     # a late reply to an older use of this seq
                    self.stats.stale_replies += 1
                    outstanding[frame.seq] = request
                    continue
                if job.index not in done:
                    label = result.label if info.classes else None    # classes 0: the spikes are the output
                    done[job.index] = InferResult(job.index, label, result.cycles, result.spikes,
                                                  job.infer_attempts, job.slot)
                    free.append(job.slot)
            # timeouts: the board answers in order, so only the oldest request can be overdue; one
            # at a time, each restarting the clock, so a long frame in the way causes no storm
            if outstanding:
                now = time.monotonic()
                oldest = min(outstanding.values(), key=lambda r: r.order)
                limit = max(self._rto(FrameType.LOAD), self._rto(FrameType.INFER))
                if now - max(oldest.sent_at, self._progress) > limit * (1.5 ** min(oldest.attempts - 1, 6)):
                    self._progress = now
                    if oldest.busy:
                        oldest.busy = False
                        resend(oldest, "busy")
                    else:
                        self.stats.timeouts += 1
                        resend(oldest, "timeout")
            while next_result in done:
                yield done.pop(next_result)
                next_result += 1
        self.stats.chunk = size


def simulated_target(target=None, *, clock_hz=None, baud=None):
    """``(clock_hz, baud)`` of a simulated board of ``target`` (a name in
    :data:`hone.boards.targets.TARGETS`; default :data:`~hone.boards.targets.DEFAULT_TARGET`): its
    design clock in Hz and the line rate a build at that clock uses
    (:meth:`~hone.boards.targets.Target.uart`), each unless given.

    Raises:
        TargetError: An unknown target, or no standard rate at ``clock_hz`` (then pass ``baud``).
    """
    from hone.boards.targets import DEFAULT_TARGET, get_target

    board = get_target(DEFAULT_TARGET if target is None else target)
    clock_hz = board.clock_hz if clock_hz is None else clock_hz
    return clock_hz, board.uart(clock_hz).baud if baud is None else int(baud)


def _default_lanes(network_path):
    """:data:`hone.rtl.plan.DEFAULT_LANES`, capped at the widest layer of the network at ``network_path``
    (:func:`hone.rtl.plan.lanes_for`; a missing file is left to :func:`hone.sim.launch.start_board` to name)."""
    import pathlib

    from hone.network.netfile import read_network
    from hone.rtl.plan import DEFAULT_LANES, lanes_for

    if not pathlib.Path(network_path).exists():
        return DEFAULT_LANES
    return lanes_for(read_network(network_path)[0])
