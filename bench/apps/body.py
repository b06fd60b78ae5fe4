"""The body-path app of pyhost's benchmark: bench/run.sh's body tests
(TESTS="... post64k get1m file100m") and bench/attack.sh.

    GET  /, /hello   hello.py's answer, byte for byte (run.sh's smoke test)
    POST /echo       reads the whole request body in 64 KiB reads and
                     answers its length in bytes (text/plain)
    GET  /big        one 1 MiB bytes object, with Content-Length
    GET  /file       file100m.bin (next to this file; run.sh writes it)
                     through wsgi.file_wrapper, with Content-Length
    GET  /stream     a generator of 64 KiB chunks, MiB MiB in all
                     (?mib=MiB, 1 to 1024, default 64), with Content-Length

/echo and /big are what the team's peer harness serves (echo.py, big.py);
/stream is what a never-reading client asks for in bench/attack.sh: the
app's thread stays in the response for as long as the server makes it wait.
No response allocates per request: /big and /stream hand out the same
module-level bytes every time.

Every stack loads this same file with Debian's /usr/bin/python3; standard
library only.
"""

import importlib.util
import os

_HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("_bench_hello", os.path.join(_HERE, "hello.py"))
_hello = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_hello)

FILE = os.path.join(_HERE, "file100m.bin")
BIG = b"x" * (1024 * 1024)
CHUNK = b"s" * (64 * 1024)
MAX_STREAM_MIB = 1024


def _text(start_response, status, text, extra=()):
    body = text.encode("ascii")
    start_response(status, [("Content-Type", "text/plain"),
                            ("Content-Length", str(len(body)))] + list(extra))
    return [body]


def _echo(environ, start_response):
    try:
        remaining = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return _text(start_response, "400 Bad Request", "bad Content-Length\n")
    stream = environ["wsgi.input"]
    total = 0
    while remaining > 0:
        chunk = stream.read(min(remaining, 65536))
        if not chunk:
            break
        total += len(chunk)
        remaining -= len(chunk)
    return _text(start_response, "200 OK", str(total))


def _big(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(len(BIG)))])
    return [BIG]


def _file(environ, start_response):
    f = open(FILE, "rb")
    size = os.fstat(f.fileno()).st_size
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(size))])
    # The server's own wrapper (and its default block size): the point is
    # what each server does with a real file.
    return environ["wsgi.file_wrapper"](f)


def _chunks(n):
    for _ in range(n):
        yield CHUNK


def _stream(environ, start_response):
    mib = 64
    for part in (environ.get("QUERY_STRING") or "").split("&"):
        key, _, value = part.partition("=")
        if key == "mib":
            if not value.isdigit() or not 1 <= int(value) <= MAX_STREAM_MIB:
                return _text(start_response, "400 Bad Request",
                             f"mib must be 1 to {MAX_STREAM_MIB}\n")
            mib = int(value)
    n = mib * 1024 * 1024 // len(CHUNK)
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(n * len(CHUNK)))])
    return _chunks(n)


_ROUTES = {
    ("POST", "/echo"): _echo,
    ("GET", "/big"): _big,
    ("GET", "/file"): _file,
    ("GET", "/stream"): _stream,
}


def application(environ, start_response):
    path = environ.get("PATH_INFO") or "/"
    route = _ROUTES.get((environ.get("REQUEST_METHOD", "GET"), path))
    if route is not None:
        return route(environ, start_response)
    if path in ("/echo", "/big", "/file", "/stream"):
        return _text(start_response, "405 Method Not Allowed", "Method not allowed\n")
    return _hello.application(environ, start_response)
