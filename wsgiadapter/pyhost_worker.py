"""pyhost worker: serves one WSGI application to the pyhost proxy.

The master starts this script with the listening UNIX socket as file
descriptor 3 and a status pipe as descriptor 4 (docs/protocol.md). It imports
the application once, reports "ready" (or the import traceback) on the pipe,
then runs THREADS threads that each accept one proxy connection at a time and
serve its requests in order.

Only the standard library is used, and the syntax stays valid for Python 3.8.
The request path is kept lean on purpose: the proxy has already parsed HTTP,
so a request costs one latin-1 decode, one split and one dict(zip()) here,
and a small response leaves in a single sendall().
"""

import importlib
import io
import json
import os
import re
import runpy
import select
import signal
import socket
import struct
import sys
import threading
import time
import traceback

PROTOCOL_VERSION = 1

T_HELLO = 1
T_REQUEST = 2
T_BODY = 3
T_HEADERS = 4
T_END = 5

MAX_PAYLOAD = 16 << 20
MAX_BODY_FRAME = 1 << 20
DRAIN_LIMIT = 1 << 20
FLAG_STREAMED = 0x01

_HDR = struct.Struct(">BI")
_LEN = struct.Struct(">I")
_END_OK = _HDR.pack(T_END, 1) + b"\x00"
_END_FAILED = _HDR.pack(T_END, 1) + b"\x01"

# Hop-by-hop headers belong to one HTTP connection; an app must not send
# them (PEP 3333) and the proxy owns the client connection, so they are
# dropped with a warning.
_HOP_BY_HOP = frozenset((
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization",
    "te", "trailers", "transfer-encoding", "upgrade",
))


# Anything but an RFC 9110 token character in a header name.
_BAD_NAME = re.compile(r"[^!#$%&'*+\-.^_`|~0-9A-Za-z]")
# A status the proxy accepts: three ASCII digits from 100, a space.
_STATUS = re.compile(r"[1-9][0-9][0-9] ", re.ASCII)

BytesIO = io.BytesIO


class ProtocolError(BaseException):
    """The proxy sent something that does not follow docs/protocol.md.

    A BaseException, like KeyboardInterrupt: it can surface inside the app
    (from wsgi.input) and must not be caught by an app's `except Exception`
    and turned into a response on a connection that is out of step.
    """


class ClientGone(BaseException):
    """The proxy closed the connection (client left or request cancelled)."""


def log(msg):
    sys.stderr.write("pyhost-worker: %s\n" % msg)
    sys.stderr.flush()


def _read_exact(rf, n):
    data = rf.read(n)
    if data is None or len(data) != n:
        raise ClientGone()
    return data


def read_frame(rf):
    head = rf.read(5)
    if not head:
        return None, None
    if len(head) != 5:
        raise ClientGone()
    typ, length = _HDR.unpack(head)
    if length > MAX_PAYLOAD:
        raise ProtocolError("frame length %d over the limit" % length)
    if length == 0:
        return typ, b""
    return typ, _read_exact(rf, length)


class ProxyReader(object):
    """The read side of a proxy connection: read(n) as a buffered file's.

    Its own buffer rather than socket.makefile's, for two reasons, both
    measured under POST 64 KiB at c=16 (docs/benchmarks.md, "Where
    uploads wait"):

    - wait_request() waits for the next REQUEST in poll(), not in recv().
      The proxy reading a response frees the worker's sent bytes, and the
      kernel then wakes whoever sleeps on the socket (unix_write_space,
      "room to write"). A thread asleep in recv() is woken for nothing,
      every request, and the wake-up is paid inside the proxy's read,
      where the proxy (one Go processor) is what every request waits
      for; poll() asked only for input is not woken by it.
    - A buffer of 256 KiB takes an inline 64 KiB request in one recv()
      where the 64 KiB one needed two.
    """

    def __init__(self, sock, size=256 << 10):
        self._sock = sock
        self._buf = bytearray(size)
        self._view = memoryview(self._buf)
        self._pos = 0
        self._end = 0
        self._poll = select.poll()
        self._poll.register(sock, select.POLLIN)

    def wait_request(self):
        """Returns once the proxy has sent something (or closed)."""
        if self._pos == self._end:
            self._poll.poll()

    def read(self, n):
        """n bytes, fewer only at the end of the stream."""
        pos = self._pos
        if self._end - pos >= n:
            self._pos = pos + n
            return bytes(self._view[pos:pos + n])
        if n > len(self._buf):
            return self._read_large(n)
        if pos:
            # Make room at the end: what is left moves to the front.
            have = self._end - pos
            self._buf[:have] = self._view[pos:self._end]
            self._pos, self._end = 0, have
        recv_into = self._sock.recv_into
        while self._end < n:
            got = recv_into(self._view[self._end:])
            if not got:
                n = self._end
                break
            self._end += got
        self._pos = n
        return bytes(self._view[:n])

    def _read_large(self, n):
        # More than the buffer holds (a large environ): what is buffered,
        # then straight from the socket.
        out = bytearray(n)
        view = memoryview(out)
        have = self._end - self._pos
        view[:have] = self._view[self._pos:self._end]
        self._pos = self._end = 0
        recv_into = self._sock.recv_into
        while have < n:
            got = recv_into(view[have:])
            if not got:
                break
            have += got
        return bytes(view[:have])

    def close(self):
        pass


class StreamedInput(object):
    """wsgi.input for a body that arrives in BODY frames.

    It reads frames lazily, only as the app asks, so a large upload passes
    through in bounded memory.
    """

    def __init__(self, rf):
        self._rf = rf
        self._buf = b""
        self._done = False
        self.broken = False  # the stream is out of step; close the connection

    def _fill(self):
        # Returns False at the end of the body.
        if self._done:
            return False
        if self.broken:
            raise ProtocolError("request body stream is broken")
        try:
            typ, payload = read_frame(self._rf)
        except BaseException:
            self.broken = True
            raise
        if typ is None:
            self.broken = True
            raise ClientGone()
        if typ != T_BODY:
            self.broken = True
            raise ProtocolError("expected BODY frame, got type %d" % typ)
        if not payload:
            self._done = True
            return False
        self._buf += payload
        return True

    def read(self, size=-1):
        if size is None or size < 0:
            chunks = [self._buf]
            self._buf = b""
            while self._fill():
                chunks.append(self._buf)
                self._buf = b""
            return b"".join(chunks)
        buf = self._buf
        if len(buf) < size:
            # Frames are gathered and joined once: appending each to the
            # last would copy the whole read again per frame.
            chunks, have = [buf], len(buf)
            self._buf = b""
            while have < size and self._fill():
                chunks.append(self._buf)
                have += len(self._buf)
                self._buf = b""
            buf = b"".join(chunks) if len(chunks) > 1 else chunks[0]
        data, self._buf = buf[:size], buf[size:]
        return data

    def readline(self, size=-1):
        while True:
            nl = self._buf.find(b"\n")
            if nl >= 0:
                end = nl + 1
                break
            if size is not None and 0 <= size <= len(self._buf):
                end = size
                break
            if not self._fill():
                end = len(self._buf)
                break
        if size is not None and 0 <= size < end:
            end = size
        line, self._buf = self._buf[:end], self._buf[end:]
        return line

    def readlines(self, hint=-1):
        lines = []
        total = 0
        while True:
            line = self.readline()
            if not line:
                return lines
            lines.append(line)
            total += len(line)
            if hint is not None and 0 < hint <= total:
                return lines

    def __iter__(self):
        return self

    def __next__(self):
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def drain(self, limit):
        """Discard the unread rest of the body; False if over limit."""
        seen = len(self._buf)
        self._buf = b""
        while seen <= limit and self._fill():
            seen += len(self._buf)
            self._buf = b""
        return self._done


class FileWrapper(object):
    """wsgi.file_wrapper: iterates a file-like object in blocks. Returned
    as the response itself, it is sent by Worker._send_file instead: a
    regular file with os.sendfile, no more than the Content-Length."""

    def __init__(self, filelike, blksize=65536):
        self.filelike = filelike
        self.blksize = blksize
        if hasattr(filelike, "close"):
            self.close = filelike.close

    def __iter__(self):
        return self

    def __next__(self):
        data = self.filelike.read(self.blksize)
        if data:
            return data
        raise StopIteration


def _frame(typ, payload):
    return _HDR.pack(typ, len(payload)) + payload


# A response body up to this size is joined with its head and END and
# leaves in one sendall(): copying a few KiB costs less than an iovec.
# Anything larger goes out with sendmsg() over the original buffers
# (scatter-gather), so the app's bytes are never copied in Python and no
# megabyte buffer is allocated and faulted in per response (issue 10
# measured 37% memmove and 34% page faults in the worker before).
SMALL_RESPONSE = 16 << 10
# SO_SNDBUF asked for on each proxy connection (serve_conn).
SEND_BUFFER = 1 << 20
# Buffers per sendmsg(); Linux takes at most IOV_MAX (1024).
_IOV_BATCH = 512
# st_mode's file type bits and a regular file's (stat.S_ISREG).
_S_IFMT = 0o170000
_S_IFREG = 0o100000


def _frames_into(parts, data):
    """Appends the BODY frames carrying data to parts without copying it
    (a body over MAX_BODY_FRAME is split into memoryview slices) and
    returns len(data)."""
    n = len(data)
    if n <= MAX_BODY_FRAME:
        parts.append(_HDR.pack(T_BODY, n))
        parts.append(data)
        return n
    view = memoryview(data)
    for off in range(0, n, MAX_BODY_FRAME):
        chunk = view[off:off + MAX_BODY_FRAME]
        parts.append(_HDR.pack(T_BODY, len(chunk)))
        parts.append(chunk)
    return n


def _sendv(conn, parts, size):
    """Sends parts (bytes or memoryviews; size is about their total) in
    order: joined in one sendall() when small, else by sendmsg() until all
    of it left. Raises ClientGone when the proxy closed the connection."""
    try:
        if size <= SMALL_RESPONSE:
            conn.sendall(parts[0] if len(parts) == 1 else b"".join(parts))
            return
        i = 0
        while i < len(parts):
            batch = parts[i:i + _IOV_BATCH]
            sent = conn.sendmsg(batch)
            for b in batch:
                n = len(b)
                if sent < n:
                    # A partial send (a signal cut it short): the rest of
                    # this buffer leads the next call.
                    parts[i] = memoryview(b)[sent:]
                    break
                sent -= n
                i += 1
    except OSError:
        raise ClientGone()


def _declared_length(head):
    """The Content-Length in an encoded HEADERS frame, or None when the app
    declared none, more than one, or one that is not a number (the proxy
    owns response framing and sorts those out)."""
    fields = head[5:].split(b"\0")
    found = [v for k, v in zip(fields[1::2], fields[2::2]) if k.lower() == b"content-length"]
    if len(found) != 1 or not found[0].strip().isdigit():
        return None
    return int(found[0])


def _regular_file(filelike):
    """(descriptor, position) of a file-like object that is a regular file
    open for binary reading, so it can be sent with os.sendfile; None for
    anything else (a pipe, a socket, a BytesIO, a text file), which is read
    in blocks instead."""
    if isinstance(filelike, io.TextIOBase):
        return None
    try:
        if not filelike.readable():
            return None
        fd = filelike.fileno()
        if os.fstat(fd).st_mode & _S_IFMT != _S_IFREG:
            return None
        return fd, filelike.tell()
    except (AttributeError, OSError, ValueError):  # io.UnsupportedOperation is both
        return None


_ERROR_500 = (
    _frame(T_HEADERS, b"500 Internal Server Error\0Content-Type\0text/plain; charset=utf-8\0Content-Length\x0022")
    + _frame(T_BODY, b"Internal Server Error\n")
    + _END_OK
)


class Worker(object):
    def __init__(self, app, threads, listener):
        self.app = app
        self.threads = threads
        self.listener = listener
        self.pid = os.getpid()
        self.stopping = False
        # busy[i] is True while thread i runs a request. Each thread writes
        # only its own slot, and a list item store is atomic, so the hot
        # path takes no lock; only stop() reads them all.
        self.busy = [False] * threads
        self.base_environ = {
            "wsgi.version": (1, 0),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": threads > 1,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
            "wsgi.file_wrapper": FileWrapper,
        }
        self.hello = _frame(
            T_HELLO,
            ("version=%d pid=%d threads=%d" % (PROTOCOL_VERSION, self.pid, threads)).encode("ascii"),
        )

    # -- connection loop ---------------------------------------------------

    def accept_loop(self, slot):
        while not self.stopping:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                if self.stopping:
                    return
                continue
            try:
                self.serve_conn(conn, slot)
            except (ClientGone, ConnectionError):
                pass
            except ProtocolError as e:
                log("closing proxy connection: %s" % e)
            except Exception:
                log("closing proxy connection after internal error:\n" + traceback.format_exc())
            finally:
                try:
                    conn.close()
                except OSError:
                    pass

    def serve_conn(self, conn, slot):
        try:
            # Room for a 1 MiB body and its frames in the socket (the
            # kernel doubles what is asked, up to net.core.wmem_max): a
            # large response leaves in one sendmsg() and the proxy takes
            # it in one or two reads, where the default ~200 KiB made
            # the thread block and be woken five times a MiB, and the
            # proxy read it in as many pieces (docs/benchmarks.md,
            # "Session 7").
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER)
        except OSError:
            pass
        rf = ProxyReader(conn)
        try:
            typ, payload = read_frame(rf)
            if typ is None:
                return
            if typ != T_HELLO:
                raise ProtocolError("expected HELLO, got frame type %d" % typ)
            if not self._version_ok(payload):
                conn.sendall(_frame(T_HELLO, b"version=0"))
                return
            conn.sendall(self.hello)
            busy = self.busy
            while not self.stopping:
                rf.wait_request()
                typ, payload = read_frame(rf)
                if typ is None:
                    return
                if typ != T_REQUEST:
                    raise ProtocolError("expected REQUEST, got frame type %d" % typ)
                busy[slot] = True
                try:
                    keep = self.handle(conn, rf, payload)
                finally:
                    busy[slot] = False
                if not keep:
                    return
        finally:
            rf.close()

    @staticmethod
    def _version_ok(payload):
        try:
            fields = dict(kv.split("=", 1) for kv in payload.decode("ascii").split(" ") if "=" in kv)
            versions = fields.get("versions", "").split(",")
        except (UnicodeDecodeError, ValueError):
            raise ProtocolError("malformed HELLO")
        return str(PROTOCOL_VERSION) in versions

    # -- one request -------------------------------------------------------

    def handle(self, conn, rf, payload):
        """Serves one request. Returns False when the connection must close."""
        if len(payload) < 5:
            raise ProtocolError("REQUEST frame too short")
        flags = payload[0]
        end = 5 + _LEN.unpack_from(payload, 1)[0]
        if flags & ~FLAG_STREAMED:
            raise ProtocolError("reserved REQUEST flags set: %#x" % flags)
        if end > len(payload):
            raise ProtocolError("environ length %d exceeds frame" % (end - 5))
        # The whole environ in three C-level calls (docs/protocol.md).
        p = payload[5:end].decode("latin-1").split("\0")
        if len(p) & 1:
            if p != [""]:
                raise ProtocolError("environ block has an odd number of fields")
            p = ()
        it = iter(p)
        environ = dict(zip(it, it))
        environ.update(self.base_environ)
        if "wsgi.url_scheme" not in environ:
            environ["wsgi.url_scheme"] = "http"
        if flags:
            if end != len(payload):
                raise ProtocolError("streamed REQUEST carries %d inline bytes" % (len(payload) - end))
            body = StreamedInput(rf)
            environ["wsgi.input"] = body
            environ["wsgi.input_terminated"] = "CONTENT_LENGTH" not in environ
            ok = self.run_app(conn, environ)
            if body.broken:
                raise ProtocolError("malformed request body")
            return ok and body.drain(DRAIN_LIMIT)
        environ["wsgi.input"] = BytesIO(payload[end:])
        environ["wsgi.input_terminated"] = True
        return self.run_app(conn, environ)

    def run_app(self, conn, environ):
        """Calls the app and sends its response. False: connection is dead."""
        state = [None, False]  # [head frame bytes, head sent]

        def start_response(status, headers, exc_info=None):
            if exc_info is not None:
                try:
                    if state[1]:
                        raise exc_info[1].with_traceback(exc_info[2])
                finally:
                    exc_info = None
            elif state[0] is not None:
                raise AssertionError("start_response called a second time without exc_info")
            state[0] = _frame(T_HEADERS, self._encode_head(status, headers, environ))
            return write

        def write(data):
            if state[0] is None:
                raise AssertionError("write() called before start_response()")
            if not isinstance(data, bytes):
                raise TypeError("write() takes bytes, not %s" % type(data).__name__)
            if not data:
                return
            parts = [] if state[1] else [state[0]]
            state[1] = True
            _sendv(conn, parts, _frames_into(parts, data))

        result = None
        try:
            result = self.app(environ, start_response)
            if type(result) in (list, tuple) and len(result) == 1 and state[0] is not None:
                # The common small response: one send for head, body and end.
                data = result[0]
                if not isinstance(data, bytes):
                    raise TypeError("response body items must be bytes, not %s" % type(data).__name__)
                parts = [] if state[1] else [state[0]]
                state[1] = True
                size = _frames_into(parts, data) if data else 0
                parts.append(_END_OK)
                _sendv(conn, parts, size)
                return True
            if type(result) is FileWrapper and state[0] is not None:
                self._send_file(conn, result, state)
                return True
            for data in result:
                if not isinstance(data, bytes):
                    raise TypeError("response body items must be bytes, not %s" % type(data).__name__)
                if not data:
                    continue
                if state[0] is None:
                    raise AssertionError("app returned body data before calling start_response()")
                parts = [] if state[1] else [state[0]]
                state[1] = True
                _sendv(conn, parts, _frames_into(parts, data))
            if state[0] is None:
                raise AssertionError("app returned without calling start_response()")
            self._send(conn, _END_OK if state[1] else state[0] + _END_OK)
            return True
        except ClientGone:
            return False
        except Exception:
            if isinstance(environ["wsgi.input"], StreamedInput) and environ["wsgi.input"].broken:
                # The app caught and re-raised as something else: the
                # connection is still out of step.
                raise ProtocolError("malformed request body")
            rid = environ.get("HTTP_X_REQUEST_ID", "-")
            log("request %s %s %s raised:\n%s" % (
                rid, environ.get("REQUEST_METHOD", ""), environ.get("REQUEST_URI", ""),
                traceback.format_exc().rstrip()))
            try:
                self._send(conn, _END_FAILED if state[1] else _ERROR_500)
            except ClientGone:
                return False
            return True
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:
                    log("close() of the response iterable raised:\n" + traceback.format_exc().rstrip())

    @staticmethod
    def _send(conn, data):
        try:
            conn.sendall(data)
        except OSError:
            raise ClientGone()

    @staticmethod
    def _send_file(conn, wrapper, state):
        """Sends a wsgi.file_wrapper response and END. A regular file goes
        out with os.sendfile, frame by frame, from its current position
        (an app serving a Range seeks first); anything else is read in
        blocks. Either way no more than the app's Content-Length is sent,
        as gunicorn does. A file that shrinks under a frame already
        announced cannot be completed honestly: the connection is closed
        (ClientGone), so the proxy ends the client's response as broken
        instead of padding it with foreign bytes."""
        f = wrapper.filelike
        left = _declared_length(state[0])  # None: up to the end of the file
        parts = [] if state[1] else [state[0]]
        regular = _regular_file(f)
        if regular is None:
            while left is None or left > 0:
                data = f.read(wrapper.blksize if left is None else min(wrapper.blksize, left))
                if not data:
                    break
                if not isinstance(data, bytes):
                    raise TypeError("file_wrapper's file read %s, not bytes" % type(data).__name__)
                if left is not None:
                    data = data[:left]
                    left -= len(data)
                _sendv(conn, parts, _frames_into(parts, data))
                state[1] = True
                parts = []
            parts.append(_END_OK)
            _sendv(conn, parts, 0)
            state[1] = True
            return
        fd, offset = regular
        sock = conn.fileno()
        while left is None or left > 0:
            # The size is read again for every frame: a file that grows
            # while it is sent is sent on, as reading it would.
            n = min(os.fstat(fd).st_size - offset, MAX_BODY_FRAME)
            if left is not None:
                n = min(n, left)
            if n <= 0:
                break
            if n <= SMALL_RESPONSE:
                # A small file or tail: read it, so the frame says exactly
                # what was read and goes out with END in one send.
                data = os.pread(fd, n, offset)
                if not data:
                    break
                n = _frames_into(parts, data)
            else:
                parts.append(_HDR.pack(T_BODY, n))
                _sendv(conn, parts, 0)
                state[1] = True
                parts = []
                done = 0
                while done < n:
                    try:
                        k = os.sendfile(sock, fd, offset + done, n - done)
                    except ConnectionError:
                        raise ClientGone()
                    except OSError as e:
                        log("file_wrapper: sending %r failed after %d bytes: %s; the response is broken" % (
                            getattr(f, "name", f), offset + done, e))
                        raise ClientGone()
                    if k == 0:
                        log("file_wrapper: %r ended at %d bytes, %d short of what was announced "
                            "(truncated while sent?); the response is broken" % (
                                getattr(f, "name", f), offset + done, n - done))
                        raise ClientGone()
                    done += k
            offset += n
            if left is not None:
                left -= n
        parts.append(_END_OK)
        _sendv(conn, parts, 0)
        state[1] = True
        try:
            f.seek(offset)  # where reading it would have left it
        except (OSError, ValueError):
            pass

    @staticmethod
    def _encode_head(status, headers, environ):
        """Validates status and headers (PEP 3333) and encodes HEADERS.

        The checks run on the joined block with C-level string methods; a
        per-header Python loop would cost more than the app itself does.
        """
        if type(status) is not str:
            raise TypeError("status must be a str, not %s" % type(status).__name__)
        if _STATUS.match(status) is None:
            raise ValueError("status %r is not 'NNN Reason' with NNN from 100 to 999" % status)
        if type(headers) is not list:
            raise TypeError("headers must be a list, not %s" % type(headers).__name__)
        parts = [status]
        for item in headers:
            if type(item) is not tuple or len(item) != 2:
                raise TypeError("headers must be (name, value) tuples, got %r" % (item,))
            parts += item
        try:
            head = "\0".join(parts)
        except TypeError:
            raise TypeError("header names and values must be str: %r" % (headers,))
        names = parts[1::2]
        if (head.count("\0") != 2 * len(headers) or "\r" in head or "\n" in head
                or _BAD_NAME.search("".join(names)) or "" in names):
            raise ValueError("invalid character in a header name or value: %r" % (headers,))
        if not _HOP_BY_HOP.isdisjoint(map(str.lower, names)):
            kept = [status]
            for name, value in headers:
                if name.lower() in _HOP_BY_HOP:
                    log("request %s: dropped hop-by-hop header %r from the app" % (
                        environ.get("HTTP_X_REQUEST_ID", "-"), name))
                else:
                    kept += (name, value)
            head = "\0".join(kept)
        try:
            return head.encode("latin-1")
        except UnicodeEncodeError:
            raise ValueError("status and headers must be latin-1 strings")

    # -- lifecycle ---------------------------------------------------------

    def start(self):
        for i in range(self.threads):
            t = threading.Thread(target=self.accept_loop, args=(i,), name="pyhost-%d" % i, daemon=True)
            t.start()

    def stop(self):
        """Stops taking connections and waits for in-flight requests."""
        self.stopping = True
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        # Shutdown only: a short poll keeps the request path free of locks.
        # Two idle readings in a row: a thread that just read a request
        # marks itself busy within a few bytecodes. (The master stops a
        # worker only after the proxy drained it, so no request should
        # arrive now; this is the second line of defence.)
        idle = 0
        while idle < 2:
            idle = 0 if any(self.busy) else idle + 1
            time.sleep(0.01)


def load_app(script, module, callable_name, directory):
    """Imports the app once: a script file run as a module (its callable
    `application`, else `app`), or a dotted module's callable."""
    if directory:
        os.chdir(directory)
    sys.path.insert(0, directory or os.getcwd())
    if module:
        obj = importlib.import_module(module)
        for part in callable_name.split("."):
            obj = getattr(obj, part)
        return obj
    names = [callable_name] if callable_name else ["application", "app"]
    namespace = runpy.run_path(script, run_name="__pyhost_app__")
    for name in names:
        if name in namespace:
            return namespace[name]
    raise LookupError("%s defines no WSGI callable named %s" % (script, " or ".join(names)))


def _app_frames(tb):
    """Skips the worker's own and runpy's frames at the top of an import
    traceback: the owner wants to see their code, not ours."""
    ours = (os.path.abspath(__file__), runpy.__file__, "<frozen runpy>")
    while tb is not None and tb.tb_next is not None and tb.tb_frame.f_code.co_filename in ours:
        tb = tb.tb_next
    return tb


# --- the fork server ------------------------------------------------------
#
# Starting an interpreter costs tens of milliseconds of CPU (site, .pth
# files, this module's imports), taken from the workers serving traffic
# while a reload or recycle runs. So the master keeps one fork server per
# app: this module, imported once and idle, forking a worker on request.
# The child imports the app after the fork, as a freshly started worker
# would: reloads still load new code. docs/design.md has the measurements.

def _parent_death_signal():
    """Returns a function that makes the calling process receive SIGKILL
    when its parent dies (prctl PR_SET_PDEATHSIG), or None without ctypes."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
    except (ImportError, OSError):
        return None
    prctl = libc.prctl

    def arm():
        prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    return arm


def _set_title(title):
    """Rewrites this process's command line as ps shows it, so a forked
    worker does not read as its fork server. Linux keeps argv where
    /proc/self/stat's arg_start and arg_end say; the process may overwrite
    its own copy (setproctitle does the same). Best effort: on failure the
    inherited command line stays."""
    try:
        import ctypes
        with open("/proc/self/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        start, end = int(fields[45]), int(fields[46])  # arg_start, arg_end
        size = end - start
        if size <= 1:
            return
        raw = title.encode("utf-8", "replace")
        if len(raw) > size - 1:
            # Whole arguments only, and say so: half a path would read as
            # a different, plausible one.
            raw = raw[:max(0, size - 5)].rsplit(b" ", 1)[0] + b" ..."
            raw = raw[:size - 1]
        ctypes.memmove(start, raw + b"\0" * (size - len(raw)), size)
    except (ImportError, OSError, ValueError, IndexError):
        pass


def _close_fds_from(low):
    """Closes every descriptor from low up. Listed from /proc/self/fd: a
    closerange to the limit is one close() per number where close_range(2)
    is missing (Python < 3.10, old glibc), 65,536 of them under pyhost's
    unit."""
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        os.closerange(low, max(os.sysconf("SC_OPEN_MAX"), 1024))
        return
    for fd in fds:
        if fd >= low:
            try:
                os.close(fd)
            except OSError:
                pass  # the directory's own descriptor, already closed


def _fingerprint():
    """What a fork would inherit stale: the interpreter binary, the site
    directories and the .pth files read at start (installing a package
    changes its directory), and sitecustomize/usercustomize. Nothing else
    needs watching: the server imports no other code that is not the
    standard library's, and imports in a child see new files. The server
    refuses to fork once this changed."""
    paths = [os.path.realpath(sys.executable)]
    try:
        import site
        sites = list(site.getsitepackages())
        if site.ENABLE_USER_SITE:
            sites.append(site.getusersitepackages())
    except (ImportError, AttributeError):
        sites = []  # run with -S, or a virtualenv's old site.py
    for d in sites:
        paths.append(d)
        try:
            # A .pth file edited in place leaves its directory's mtime.
            paths += sorted(os.path.join(d, n) for n in os.listdir(d) if n.endswith(".pth"))
        except OSError:
            pass
    # Code site ran at start from anywhere on sys.path.
    for name in ("sitecustomize", "usercustomize"):
        mod = sys.modules.get(name)
        if getattr(mod, "__file__", None):
            paths.append(mod.__file__)
    seen = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            seen.append((path, None))  # appearing later counts as a change
            continue
        seen.append((path, st.st_ino, st.st_mtime_ns))
    return seen


def serve_forks(control_fd):
    """Runs the fork server on the SOCK_SEQPACKET socket control_fd: each
    request from the master is one JSON message {"id", "argv"} with three
    descriptors (listening socket, status pipe, output pipe); the answer is
    {"event": "spawned", "id", "pid"} or {"event": "refused", "id",
    "error"}, and {"event": "exit", "pid", "status"} follows when that
    child is reaped. Returns when the master closes the socket."""
    control = socket.socket(fileno=control_fd)
    arm_death_signal = _parent_death_signal()
    # Warm what every worker needs before the app: runpy's helpers.
    runpy.run_path(os.devnull)
    fingerprint = _fingerprint()
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    # The master ends the server by closing the socket, once no worker is
    # left: a stray SIGTERM (or a SIGUSR1 meant for the workers' stack
    # dumps) must not take the workers down with it.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1):
        signal.signal(signum, signal.SIG_IGN)
    try:
        import gc
        gc.collect()
        gc.freeze()  # shared pages stay shared: the children's GC skips them
    except AttributeError:
        pass
    server_pid = os.getpid()

    def send(**fields):
        control.send(json.dumps(fields).encode())  # OSError: the master is gone

    send(event="ready", pid=server_pid)
    fd_space = socket.CMSG_SPACE(3 * 4)
    while True:
        readable, _, _ = select.select([control, wake_r], [], [])
        if wake_r in readable:
            try:
                while os.read(wake_r, 512):
                    pass
            except BlockingIOError:
                pass
            while True:
                try:
                    pid, status = os.waitpid(-1, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid == 0:
                    break
                send(event="exit", pid=pid, status=status)
        if control not in readable:
            continue
        data, ancdata, _, _ = control.recvmsg(1 << 16, fd_space)
        fds = []
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                n = len(payload) // 4
                fds.extend(struct.unpack("%di" % n, payload[:n * 4]))
        if not data:
            return  # the master closed its end: nothing more to fork
        req, stale = None, False
        try:
            req = json.loads(data.decode())
            argv = req["argv"]
            if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
                raise ValueError("argv must be a list of strings")
            if len(fds) != 3:
                raise ValueError("a spawn request carries 3 descriptors, got %d" % len(fds))
            stale = _fingerprint() != fingerprint
            if stale:
                raise ValueError("the interpreter or a site directory changed since the fork server started")
            pid = os.fork()
        except (ValueError, KeyError, TypeError, OSError) as e:
            for fd in fds:
                os.close(fd)
            send(event="refused", id=req.get("id") if isinstance(req, dict) else None, error=str(e), stale=stale)
            continue
        if pid == 0:
            control.detach()  # fd 3 is about to become the worker's listener
            _become_worker(argv, fds, server_pid, arm_death_signal)
        # The child leads its own group before the master hears of it (it
        # does the same itself; whichever runs first wins): the master
        # stops a worker by its group, at any time after this answer.
        try:
            os.setpgid(pid, pid)
        except OSError:
            pass  # the child got there first, or has already exited
        for fd in fds:
            os.close(fd)
        send(event="spawned", id=req["id"], pid=pid)


def _become_worker(argv, fds, server_pid, arm_death_signal):
    """The child half of a fork: takes the descriptors a started worker
    would have (output as 1 and 2, listener 3, status 4), its own process
    group (the master stops a worker by group), and runs main()."""
    code = 70
    try:
        signal.set_wakeup_fd(-1)
        for signum in (signal.SIGCHLD, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_DFL)
        os.setpgid(0, 0)
        if arm_death_signal is not None:
            arm_death_signal()
        if os.getppid() != server_pid:
            os._exit(code)  # the server died before the signal was armed
        import fcntl
        high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in fds]
        listen, status, output = high
        os.dup2(output, 1)
        os.dup2(output, 2)
        os.dup2(listen, 3)
        os.dup2(status, 4)
        _close_fds_from(5)
        app = sys.argv[sys.argv.index("--app") + 1] if "--app" in sys.argv[:-1] else ""
        _set_title(" ".join([os.path.basename(sys.executable), "pyhost_worker.py", "--app", app] + argv))
        code = main(argv)
    except SystemExit as e:
        code = 0 if e.code is None else e.code if isinstance(e.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


# --- signals ----------------------------------------------------------------
#
# An app's own children (subprocess, os.system) inherit the signal mask of
# the thread that started them and every ignored disposition, across exec.
# So the worker blocks nothing and ignores nothing: SIGTERM, SIGINT and
# SIGUSR1 get Python handlers (exec resets those to the default), and the
# one thread that acts on them reads the interpreter's wakeup pipe, which
# the C-level handler writes from whichever thread the kernel picked.

def _ignore(signum, frame):
    pass


def _reset_signals():
    """Undoes what the worker may inherit (pyhostd's own start, nohup, the
    fork server): an empty mask, and every ignored or Python-handled signal
    back to its default, but SIGPIPE and SIGXFSZ, which Python ignores
    itself (subprocess restores them in the children it starts)."""
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    keep = {signal.SIGPIPE, signal.SIGXFSZ, signal.SIGKILL, signal.SIGSTOP}
    for signum in signal.valid_signals():
        if signum in keep:
            continue
        try:
            handler = signal.getsignal(signum)
            if handler == signal.SIG_IGN or callable(handler):
                signal.signal(signum, signal.SIG_DFL)
        except (OSError, ValueError):
            pass  # not settable from Python (a signal libc keeps)


def dump_stacks():
    """Writes every other thread's Python stack to stderr (the app's log):
    the master sends SIGUSR1 to a worker stuck past request_timeout before
    it recycles it, so the owner sees where it hung. Run by the signals
    thread with the GIL, from sys._current_frames(): faulthandler's
    all-thread dump walks other threads' frames from a signal handler,
    without the GIL, and crashed a 16-thread worker (SIGSEGV) twice in 20
    recycles."""
    names = dict((t.ident, t.name) for t in threading.enumerate())
    me = threading.get_ident()
    parts = ["pyhost-worker: Python stacks of pid %d, most recent call last\n" % os.getpid()]
    for ident, frame in sys._current_frames().items():
        if ident == me:
            continue
        parts.append("Thread %s (%#x):\n" % (names.get(ident, "?"), ident))
        parts.extend(traceback.format_stack(frame))
    del frame
    sys.stderr.write("".join(parts))
    sys.stderr.flush()


class Signals(object):
    """The worker's signals, taken by one daemon thread ("pyhost-signals")
    that reads the wakeup pipe: SIGUSR1 dumps the stacks, SIGTERM sets
    stop (once take_sigterm was called), SIGINT does nothing. Created in
    the main thread, before the app is imported, so a hang at import can be
    dumped too."""

    def __init__(self):
        self.stop = threading.Event()
        self._r, self._w = os.pipe()
        os.set_blocking(self._w, False)
        self._arm()
        for signum in (signal.SIGUSR1, signal.SIGINT):
            signal.signal(signum, _ignore)
        threading.Thread(target=self._run, name="pyhost-signals", daemon=True).start()

    def _arm(self):
        signal.set_wakeup_fd(self._w, warn_on_full_buffer=False)

    def take_sigterm(self):
        """Makes SIGTERM the graceful stop. Before, while the app imports,
        it has its default action: a worker stopped then just ends. Also
        re-arms the pipe, in case the app's import set a wakeup fd of its
        own."""
        self._arm()
        signal.signal(signal.SIGTERM, _ignore)

    def _run(self):
        while True:
            data = os.read(self._r, 64)
            if not data:
                return
            got = bytearray(data)
            if signal.SIGTERM in got:
                self.stop.set()
            if signal.SIGUSR1 in got:  # one dump for a burst of them
                try:
                    dump_stacks()
                except Exception:
                    log("stack dump failed:\n" + traceback.format_exc())


USAGE = """usage: pyhost_worker.py [--app USER/APP] (--script FILE | --module NAME) [--callable NAME]
                         [--directory DIR] [--threads N] [--umask OCTAL] [--cgroup DIR] [--listen-fd FD] [--status-fd FD]
       pyhost_worker.py --fork-server
"""


class Args(object):
    """The worker's command line (pyhostd builds it; see USAGE)."""

    def __init__(self):
        self.app = ""  # USER/APP, for ps only
        self.script = ""
        self.module = ""
        self.callable = ""
        self.directory = ""
        self.threads = 4
        self.umask = 0o027
        self.cgroup = ""  # the worker's own cgroup directory (issue 14)
        self.listen_fd = 3
        self.status_fd = 4


def parse_args(argv):
    """Parses "--name value" pairs into Args; raises ValueError. Not
    argparse: building a parser costs a forked worker more (gettext lookups,
    regex compiles: 18 ms of a 30 ms start, measured) than all the rest."""
    args = Args()
    ints = ("threads", "listen_fd", "status_fd")
    i = 0
    while i < len(argv):
        flag = argv[i]
        name = flag[2:].replace("-", "_") if flag.startswith("--") else ""
        if name not in vars(args):
            raise ValueError("unknown argument %r" % flag)
        if i + 1 >= len(argv):
            raise ValueError("%s needs a value" % flag)
        value = argv[i + 1]
        if name in ints:
            try:
                value = int(value)
            except ValueError:
                raise ValueError("%s needs a whole number, not %r" % (flag, value))
        elif name == "umask":
            try:
                value = int(value, 8)
            except ValueError:
                value = -1
            if not 0 <= value <= 0o777:
                raise ValueError("%s needs an octal mask like 027, not %r" % (flag, argv[i + 1]))
        setattr(args, name, value)
        i += 2
    if bool(args.script) == bool(args.module):
        raise ValueError("exactly one of --script and --module is required")
    return args


def _batch_scheduling():
    """Puts this thread, and so every thread and process it starts, under
    SCHED_BATCH. The proxy writes a request and goes on serving its other
    connections; under the default policy the worker it wakes preempts it
    on its CPU at once, as if the writer were about to wait. A batch task
    waits for its turn instead: its share of the CPU is the same, only
    wake-up preemption goes. Measured on hello over TLS: the stack's CPU
    per request 123 -> 92 us (docs/benchmarks.md). No privilege is needed,
    and an app may set its threads back (os.sched_setscheduler)."""
    try:
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    except (AttributeError, OSError):
        pass  # not Linux, or refused: the default policy is correct too


def main(argv=None):
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--fork-server":
        _batch_scheduling()
        try:
            serve_forks(3)
        except OSError:
            pass  # the master is gone; so are the children (death signal)
        return 0
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
    except ValueError as e:
        sys.stderr.write("pyhost_worker: %s\n%s" % (e, USAGE))
        return 2

    # Before any thread starts: they inherit it. (A forked worker has it
    # from its fork server already.)
    _batch_scheduling()
    # The app's umask (its umask key, default 027), before its code runs.
    os.umask(args.umask)
    if args.cgroup:
        # Forked workers are born in the app's cgroup; the worker's own
        # leaf (killed whole when it ends) is joined before the app runs.
        try:
            with open(os.path.join(args.cgroup, "cgroup.procs"), "w") as f:
                f.write("0")
        except OSError as e:
            sys.stderr.write("pyhost_worker: cannot join cgroup %s: %s\n" % (args.cgroup, e))
    # Before the app's code runs, so neither it nor its children inherit
    # a mask or an ignored signal (issue 11 item 6).
    _reset_signals()
    signals = Signals()
    status = os.fdopen(args.status_fd, "w", buffering=1)
    listener = socket.socket(fileno=args.listen_fd)

    def report(event, **fields):
        fields["event"] = event
        fields["pid"] = os.getpid()
        try:
            status.write(json.dumps(fields) + "\n")
            status.flush()
        except OSError:
            pass

    try:
        app = load_app(args.script, args.module, args.callable, args.directory)
        if not callable(app):
            raise TypeError("the WSGI callable of %s is not callable" % (args.script or args.module,))
    except BaseException as e:
        tb = "".join(traceback.format_exception(type(e), e, _app_frames(e.__traceback__)))
        sys.stderr.write(tb)
        sys.stderr.flush()
        report("import_error", error="%s: %s" % (type(e).__name__, e), traceback=tb)
        return 3

    worker = Worker(app, max(1, args.threads), listener)
    signals.take_sigterm()
    worker.start()
    report("ready")
    status.close()
    signals.stop.wait()
    worker.stop()
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    # Daemon threads may still sit in recv(); leave without joining them.
    os._exit(code)
