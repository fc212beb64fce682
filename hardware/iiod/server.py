"""The IIOD network server: libiio 0.24's legacy text protocol over TCP.

One thread per connection; libiio opens a control connection per context plus one per
buffer, so several connections act on the same device state concurrently (the model
locks its own state). A fault on one connection (garbage, disconnect mid-stream, a
handler error) ends at most that connection; the listener keeps serving.

Replies follow ``iiod/ops.c``: decimal status lines (``-errno`` on failure), attribute
values as ``<len>\\n<value incl. NUL>\\n``, buffer reads as ``<len>\\n`` per chunk with the
channel mask line after the first length only.

Every number a client sends is validated before anything changes state, and nothing a
client announces makes the server hold more than the device would:

* a number outside a C ``long`` (e.g. 5,000 digits) and a negative ``WRITE`` length get
  ``-EINVAL`` and the connection goes on; a request line longer than :data:`MAX_LINE` gets
  one ``-EINVAL`` and its rest is skipped;
* a ``WRITE`` longer than :data:`WRITE_MAX` is drained in small pieces (memory stays
  bounded, the protocol stays in sync) and answered ``-E2BIG``, like the kernel's sysfs
  refusing a write larger than its buffer;
* ``OPEN`` checks the sample count as the driver does: 0 -> ``-EINVAL``; more than an
  ``unsigned int`` (``buffer/length`` is parsed with ``kstrtouint``) -> ``-ERANGE``; kernel
  buffers x samples x bytes per sample beyond :data:`DMA_POOL_BYTES` (the contiguous memory
  the DMA buffers are allocated from) -> ``-ENOMEM``. ``SET ... BUFFERS_COUNT`` accepts
  1..:data:`MAX_KERNEL_BUFFERS`;
* at most ``max_connections`` (default :data:`MAX_CONNECTIONS`) connections are served at
  once; a further one is closed at once (logged at warning level, at most once per
  :data:`REFUSAL_LOG_INTERVAL_S`);
* a connection that sends nothing (or does not read its replies) for ``idle_timeout_s``
  (default :data:`IDLE_TIMEOUT_S`, 10 minutes) is closed. A ``READBUF`` waiting for
  samples is not idle.
"""

from __future__ import annotations

import errno
import logging
import socket
import struct
import threading
import time

from hardware.iiod.buffers import BufferBackend, BufferSession
from hardware.iiod.context import (
    Attribute,
    Context,
    Device,
    IIOError,
    format_mask,
    parse_mask,
    sample_size,
)
from hardware.iiod.parser import Command, ParseError, parse_line

log = logging.getLogger(__name__)

DEFAULT_PORT = 30431
MAX_LINE = 16384
#: Longest attribute ``WRITE`` payload accepted (the daemon's 64 KiB attribute buffer).
WRITE_MAX = 0x10000
#: Contiguous memory the kernel's DMA buffers come from (the Pluto's CMA pool, 256 MiB).
DMA_POOL_BYTES = 256 << 20
#: ``buffer/length`` is an ``unsigned int``.
UINT_MAX = 0xFFFFFFFF
#: libiio's default number of kernel buffers, and the most ``SET BUFFERS_COUNT`` accepts.
DEFAULT_KERNEL_BUFFERS = 4
MAX_KERNEL_BUFFERS = 64
#: Concurrent connections served (a Pluto client uses one per context plus one per buffer).
MAX_CONNECTIONS = 64
#: Seconds a connection may stay silent (or leave its replies unread) before it is closed.
IDLE_TIMEOUT_S = 600.0
#: At most one warning per this many seconds about refused connections.
REFUSAL_LOG_INTERVAL_S = 10.0
#: Reply buffer sizes in iiod/ops.c: device attributes 64 KiB, channel attributes 1 KiB.
DEVICE_ATTR_MAX = 0x10000 - 1
CHANNEL_ATTR_MAX = 1024 - 1

HELP_TEXT = (
    "Available commands:\n\n"
    "\tHELP\n\t\tPrint this help message\n"
    "\tEXIT\n\t\tClose the current session\n"
    "\tPRINT\n\t\tDisplays a XML string corresponding to the current IIO context\n"
    "\tZPRINT\n\t\tGet a compressed XML string corresponding to the current IIO context\n"
    "\tVERSION\n\t\tGet the version of libiio in use\n"
    "\tTIMEOUT <timeout_ms>\n\t\tSet the timeout (in ms) for I/O operations\n"
    "\tOPEN <device> <samples_count> <mask> [CYCLIC]\n"
    "\t\tOpen the specified device with the given mask of channels\n"
    "\tCLOSE <device>\n\t\tClose the specified device\n"
    "\tREAD <device> DEBUG|BUFFER|[INPUT|OUTPUT <channel>] [<attribute>]\n"
    "\t\tRead the value of an attribute\n"
    "\tWRITE <device> DEBUG|BUFFER|[INPUT|OUTPUT <channel>] [<attribute>] <bytes_count>\n"
    "\t\tSet the value of an attribute\n"
    "\tREADBUF <device> <bytes_count>\n\t\tRead raw data from the specified device\n"
    "\tWRITEBUF <device> <bytes_count>\n\t\tWrite raw data to the specified device\n"
    "\tGETTRIG <device>\n\t\tGet the name of the trigger used by the specified device\n"
    "\tSETTRIG <device> [<trigger>]\n\t\tSet the trigger to use for the specified device\n"
    "\tSET <device> BUFFERS_COUNT <count>\n"
    "\t\tSet the number of kernel buffers for the specified device\n"
)


class _Closed(Exception):
    """The peer went away."""


class _Connection:
    """One client connection: line/byte reads over the socket and command dispatch."""

    def __init__(self, server: IIODServer, sock: socket.socket) -> None:
        self.server = server
        self.sock = sock
        self.buf = bytearray()
        self.skipping = False  # discarding the rest of an overlong line
        self.timeout_s: float | None = None
        self.sessions: dict[str, BufferSession] = {}

    # -- socket I/O -----------------------------------------------------------------
    def _fill(self) -> None:
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise _Closed
        self.buf += chunk

    def readline(self) -> bytes:
        """The next request line; an overlong one comes back once as a malformed line
        and its rest (up to its newline) is discarded."""
        while True:
            pos = self.buf.find(b"\n")
            if pos >= 0:
                line = bytes(self.buf[: pos + 1])
                del self.buf[: pos + 1]
                if self.skipping:
                    self.skipping = False
                    continue
                return line
            if len(self.buf) > MAX_LINE:
                self.buf.clear()
                if not self.skipping:
                    self.skipping = True
                    return b"\x00overlong\n"  # answered as a malformed command
            self._fill()

    def read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            self._fill()
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def drain(self, n: int) -> None:
        """Read and drop ``n`` bytes, holding at most one socket read at a time."""
        while n > 0:
            if not self.buf:
                self._fill()
            taken = min(n, len(self.buf))
            del self.buf[:taken]
            n -= taken

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def status(self, value: int) -> None:
        self.send(b"%d\n" % value)

    # -- main loop ------------------------------------------------------------------
    def serve(self) -> None:
        try:
            while not self.server.stopping:
                line = self.readline()
                try:
                    cmd = parse_line(line)
                except ParseError as exc:
                    log.debug("malformed request %r: %s", line[:80], exc)
                    self.status(-errno.EINVAL)
                    continue
                if cmd is None:
                    continue
                if cmd.op == "EXIT":
                    break
                self.dispatch(cmd)
        except TimeoutError:
            log.info("closing a connection idle for %g s", self.server.idle_timeout_s)
        except (_Closed, ConnectionError, OSError):
            pass
        except Exception:  # noqa: BLE001 - one bad connection must not stop the server
            log.exception("connection handler failed; dropping this connection")
        finally:
            for session in self.sessions.values():
                self.server.release(session)
            self.sessions.clear()

    def dispatch(self, cmd: Command) -> None:
        handler = getattr(self, "_do_" + cmd.op.lower())
        handler(cmd)

    def _device(self, cmd: Command) -> Device | None:
        return self.server.context.find_device(cmd.device or "")

    def _device_or_enodev(self, cmd: Command) -> Device | None:
        """The device ``cmd`` addresses, or None after replying the daemon's -ENODEV."""
        dev = self._device(cmd)
        if dev is None:
            self.status(-errno.ENODEV)
        return dev

    # -- context commands -----------------------------------------------------------
    def _do_version(self, cmd: Command) -> None:
        major, minor, git = self.server.context.version
        self.send(f"{major}.{minor}.{git[:7]:<7}\n".encode())

    def _do_help(self, cmd: Command) -> None:
        self.send(HELP_TEXT.encode())

    def _do_print(self, cmd: Command) -> None:
        xml = self.server.context.xml().encode()
        self.send(b"%d\n" % len(xml) + xml + b"\n")

    def _do_zprint(self, cmd: Command) -> None:
        self.status(-errno.EINVAL)  # built without zstd, like Debian's iiod; clients use PRINT

    def _do_timeout(self, cmd: Command) -> None:
        self.timeout_s = cmd.number / 1000.0 if cmd.number > 0 else None
        self.status(0)

    # -- attributes -----------------------------------------------------------------
    def _attrs_of(self, cmd: Command) -> tuple[list[Attribute], int] | None:
        """The attributes ``cmd`` addresses and their read size limit; replies the
        daemon's -ENODEV / -ENXIO and returns None when the device or channel is absent."""
        dev = self._device_or_enodev(cmd)
        if dev is None:
            return None
        if cmd.kind != "channel":
            return dev.attr_list(cmd.kind), DEVICE_ATTR_MAX
        chan = dev.find_channel(cmd.channel or "", cmd.output)
        if chan is None:
            self.status(-errno.ENXIO)
            return None
        return chan.attrs, CHANNEL_ATTR_MAX

    def _do_read(self, cmd: Command) -> None:
        found = self._attrs_of(cmd)
        if found is None:
            return
        attrs, limit = found
        try:
            with self.server.lock:
                data = _read_all(attrs) if cmd.attr is None else _read_one(attrs, cmd.attr)
        except IIOError as exc:
            self.status(-exc.errno)
            return
        if len(data) > limit:
            self.status(-errno.EFBIG)
            return
        self.send(b"%d\n" % len(data) + data + b"\n")

    def _do_write(self, cmd: Command) -> None:
        if cmd.number < 0:  # nothing follows: the next bytes are the next command
            self.status(-errno.EINVAL)
            return
        if cmd.number > WRITE_MAX:
            self.drain(cmd.number)
            self.status(-errno.E2BIG)
            return
        payload = self.read_exact(cmd.number)
        found = self._attrs_of(cmd)
        if found is None:
            return
        attrs = found[0]
        try:
            with self.server.lock:
                if cmd.attr is None:
                    _write_all(attrs, payload)
                else:
                    _find(attrs, cmd.attr).set(_decode_value(payload))
        except IIOError as exc:
            log.debug("write %s %s rejected: %s", cmd.device, cmd.attr, exc)
            self.status(-exc.errno)
            return
        self.status(len(payload))

    # -- triggers and kernel buffers --------------------------------------------------
    def _do_gettrig(self, cmd: Command) -> None:
        self.status(-errno.ENODEV if self._device(cmd) is None else -errno.ENOENT)

    def _do_settrig(self, cmd: Command) -> None:
        self.status(-errno.ENODEV if self._device(cmd) is None else -errno.ENOENT)

    def _do_set(self, cmd: Command) -> None:
        dev = self._device_or_enodev(cmd)
        if dev is None:
            return
        if not 1 <= cmd.number <= MAX_KERNEL_BUFFERS:
            self.status(-errno.EINVAL)
            return
        deadline = time.monotonic() + 0.05  # iiod retries EBUSY for 50 ms
        while True:
            try:
                self.server.set_kernel_buffers(dev, cmd.number)
                self.status(0)
                return
            except IIOError as exc:
                if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                    self.status(-exc.errno)
                    return
            time.sleep(0.001)

    # -- buffers --------------------------------------------------------------------
    def _do_open(self, cmd: Command) -> None:
        dev = self._device_or_enodev(cmd)
        if dev is None:
            return
        if dev.id in self.sessions:
            self.status(-errno.EBUSY)
            return
        try:
            mask = parse_mask(cmd.mask, dev)
            self.server.check_buffer(dev, cmd.number, mask)
            session = self.server.acquire(dev, cmd.number, mask, cmd.cyclic)
        except IIOError as exc:
            self.status(-exc.errno)
            return
        self.sessions[dev.id] = session
        self.status(0)

    def _do_close(self, cmd: Command) -> None:
        dev = self._device_or_enodev(cmd)
        if dev is None:
            return
        session = self.sessions.pop(dev.id, None)
        if session is None:
            self.status(-errno.ENXIO)
            return
        self.server.release(session)
        self.status(0)

    def _session(self, cmd: Command) -> tuple[Device, BufferSession] | None:
        """The device ``cmd`` addresses and its open buffer session, or None after
        replying -ENODEV (no such device) or -EBADF (no buffer open on it)."""
        dev = self._device_or_enodev(cmd)
        if dev is None:
            return None
        session = self.sessions.get(dev.id)
        if session is None:
            self.status(-errno.EBADF)
            return None
        return dev, session

    def _do_readbuf(self, cmd: Command) -> None:
        found = self._session(cmd)
        if found is None:
            return
        dev, session = found
        if dev.is_output:
            self.status(-errno.EPERM)
            return
        remaining = cmd.number
        if remaining < session.sample_size:
            self.status(0)
            return
        chunk_max = session.samples_count * session.sample_size
        first = True  # iiod sends the mask after the first chunk length of every READBUF
        while remaining >= session.sample_size:
            size = min(remaining, chunk_max)
            size -= size % session.sample_size
            try:
                data = session.read(size, self.timeout_s)
            except IIOError as exc:
                self.status(-exc.errno)
                return
            header = b"%d\n" % len(data)
            if first:
                header += format_mask(session.mask, dev).encode() + b"\n"
                first = False
            self.send(header + data)
            remaining -= len(data)
        if remaining:
            self.status(0)

    def _do_writebuf(self, cmd: Command) -> None:
        found = self._session(cmd)
        if found is None:
            return
        dev, session = found
        if not dev.is_output:
            self.status(-errno.EPERM)
            return
        if cmd.number < session.sample_size:
            self.status(0)
            return
        self.status(0)  # "no error, send the data"
        remaining = cmd.number
        chunk_max = session.samples_count * session.sample_size
        written = 0
        error = 0
        while remaining >= session.sample_size:
            size = min(remaining, chunk_max)
            data = self.read_exact(size)
            remaining -= size
            usable = len(data) - len(data) % session.sample_size
            if error:
                continue
            try:
                session.write(data[:usable])
                written += usable
            except IIOError as exc:
                error = -exc.errno
        if remaining:
            self.read_exact(remaining)
        self.status(error or written)


def _find(attrs: list[Attribute], name: str) -> Attribute:
    for attribute in attrs:
        if attribute.name == name:
            return attribute
    raise IIOError(errno.ENOENT, f"no attribute {name!r}")


def _read_one(attrs: list[Attribute], name: str) -> bytes:
    return _find(attrs, name).get().encode() + b"\x00"


def _read_all(attrs: list[Attribute]) -> bytes:
    """libiio's read-all format: per attribute a big-endian int32 length (or -errno)
    followed by the value padded to 4 bytes."""
    out = bytearray()
    for attribute in attrs:
        try:
            value = attribute.get().encode() + b"\x00"
        except IIOError as exc:
            out += struct.pack(">i", -exc.errno)
            continue
        out += struct.pack(">i", len(value)) + value + b"\x00" * (-len(value) % 4)
    return bytes(out)


def _write_all(attrs: list[Attribute], payload: bytes) -> None:
    pos = 0
    for attribute in attrs:
        if pos + 4 > len(payload):
            break
        (length,) = struct.unpack(">i", payload[pos : pos + 4])
        pos += 4
        if length <= 0:
            continue
        attribute.set(_decode_value(payload[pos : pos + length]))
        pos += length + (-length % 4)


def _decode_value(payload: bytes) -> str:
    """A written value: up to the first NUL, decoded, surrounding whitespace removed."""
    return payload.split(b"\x00", 1)[0].decode("utf-8", errors="replace").strip()


class IIODServer:
    """Serve one IIO context over TCP (one thread per connection).

    Args:
        context: the devices and attributes to serve.
        backend: buffer I/O for the context's buffer devices (None: OPEN fails ENODEV).
        host: address to bind (tests use 127.0.0.1).
        port: TCP port; 0 picks a free one (see :attr:`port` after :meth:`start`).
        lock: lock held around attribute access (share it with the device model).
        max_connections: connections served at once; further ones are closed at once.
        idle_timeout_s: seconds of silence after which a connection is closed.
    """

    def __init__(
        self,
        context: Context,
        backend: BufferBackend | None = None,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        lock: threading.RLock | None = None,
        *,
        max_connections: int = MAX_CONNECTIONS,
        idle_timeout_s: float = IDLE_TIMEOUT_S,
    ) -> None:
        if max_connections < 1 or idle_timeout_s <= 0:
            raise ValueError("max_connections must be >= 1 and idle_timeout_s > 0")
        self.context = context
        self.max_connections = max_connections
        self.idle_timeout_s = idle_timeout_s
        self.refused = 0  # connections closed because max_connections were being served
        self._last_refusal_log = -REFUSAL_LOG_INTERVAL_S
        self._kernel_buffers: dict[str, int] = {}
        self.backend = backend
        self.host = host
        self.requested_port = port
        self.lock = lock or threading.RLock()
        self.stopping = False
        self._listener: socket.socket | None = None
        self._accept_thread: threading.Thread | None = None
        self._conns: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        self._open: dict[str, list[BufferSession]] = {}
        self._buf_cond = threading.Condition()

    # -- lifecycle ------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._listener is None:
            raise RuntimeError("server not started")
        return self._listener.getsockname()[1]

    @property
    def uri(self) -> str:
        """The libiio URI of this server, e.g. ``ip:127.0.0.1:30431``."""
        return f"ip:{self.host}:{self.port}"

    def start(self) -> IIODServer:
        """Bind, listen and start accepting connections in a background thread."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.requested_port))
        except OSError:
            sock.close()
            raise
        sock.listen(64)
        self._listener = sock
        self.stopping = False
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name=f"iiod-accept-{self.port}", daemon=True
        )
        self._accept_thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting, close every connection and wait for the handler threads."""
        self.stopping = True
        if self._listener is not None:
            try:
                self._listener.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            self._listener.close()
        with self._buf_cond:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._accept_thread is not None:
            self._accept_thread.join(timeout=5)
        for thread in list(self._threads):
            thread.join(timeout=5)
        self._listener = None

    def __enter__(self) -> IIODServer:
        return self.start() if self._listener is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self.stopping:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                break
            with self._buf_cond:
                full = len(self._conns) >= self.max_connections
            if full:
                self._refuse(conn)
                continue
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.settimeout(self.idle_timeout_s)
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            with self._buf_cond:
                self._conns.add(conn)
                self._threads.add(thread)
            thread.start()

    def _refuse(self, conn: socket.socket) -> None:
        """Close a connection beyond ``max_connections`` (rate-limited warning)."""
        self.refused += 1
        conn.close()
        now = time.monotonic()
        if now - self._last_refusal_log >= REFUSAL_LOG_INTERVAL_S:
            self._last_refusal_log = now
            log.warning(
                "%d connections open (the limit): refused a new one (%d refused so far)",
                self.max_connections,
                self.refused,
            )

    def _serve(self, conn: socket.socket) -> None:
        try:
            _Connection(self, conn).serve()
        finally:
            with self._buf_cond:
                self._conns.discard(conn)
                self._threads.discard(threading.current_thread())
            try:
                conn.close()
            except OSError:
                pass

    # -- buffer bookkeeping (shared by all connections) ------------------------------
    def check_buffer(self, dev: Device, samples_count: int, mask: int) -> None:
        """Refuse, as the driver would, a buffer of ``samples_count`` samples of the
        channels in ``mask``: EINVAL (no sample or no channel), ERANGE (more than
        ``buffer/length`` holds), ENOMEM (the kernel buffers exceed the DMA pool)."""
        size = sample_size(dev, mask)
        if samples_count < 1 or size == 0:
            raise IIOError(errno.EINVAL, "a buffer needs at least one sample and channel")
        if samples_count > UINT_MAX:
            raise IIOError(errno.ERANGE, f"buffer length {samples_count} exceeds an unsigned int")
        with self._buf_cond:
            count = self._kernel_buffers.get(dev.id, DEFAULT_KERNEL_BUFFERS)
        if count * samples_count * size > DMA_POOL_BYTES:
            raise IIOError(
                errno.ENOMEM,
                f"{count} buffers of {samples_count} x {size} B exceed the "
                f"{DMA_POOL_BYTES >> 20} MiB DMA pool",
            )

    def acquire(self, dev: Device, samples_count: int, mask: int, cyclic: bool) -> BufferSession:
        """Open a buffer session; an output device or a cyclic buffer is exclusive.

        Like iiod, waits up to 50 ms for a previous exclusive user to close (its CLOSE
        may travel on another connection and arrive late).
        """
        if self.backend is None:
            raise IIOError(errno.ENODEV, "this context has no buffer backend")
        deadline = time.monotonic() + 0.05
        with self._buf_cond:
            while True:
                current = self._open.get(dev.id, [])
                exclusive = cyclic or dev.is_output or any(s.cyclic for s in current)
                if not (current and exclusive):
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    raise IIOError(errno.EBUSY, f"{dev.name} buffer is busy")
                self._buf_cond.wait(left)
            session = self.backend.open(dev, samples_count, mask, cyclic)
            self._open.setdefault(dev.id, []).append(session)
            return session

    def release(self, session: BufferSession) -> None:
        """Close ``session`` and wake anybody waiting to open its device."""
        try:
            session.close()
        finally:
            with self._buf_cond:
                for sessions in self._open.values():
                    if session in sessions:
                        sessions.remove(session)
                self._buf_cond.notify_all()

    def set_kernel_buffers(self, dev: Device, count: int) -> None:
        with self._buf_cond:
            if self._open.get(dev.id):
                raise IIOError(errno.EBUSY, "buffer is open")
            if self.backend is None:
                raise IIOError(errno.ENODEV, "this context has no buffer backend")
            self.backend.set_kernel_buffers(dev, count)
            self._kernel_buffers[dev.id] = count

    def open_sessions(self, dev: Device) -> int:
        """Number of buffers currently open on ``dev``."""
        with self._buf_cond:
            return len(self._open.get(dev.id, []))
