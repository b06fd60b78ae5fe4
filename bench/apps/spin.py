"""CPU-spinning WSGI app for bench/cgroup.sh's neighbour test (issue 14).

GET /spin?s=N burns CPU in a pure-Python loop for N seconds (0 < N <= 10,
default 1) and answers 200 with the loop count; anything else answers
hello.py's "Hello!". Stdlib only; the bound keeps every request finite.
"""

import time
from urllib.parse import parse_qs

_MAX_SECONDS = 10.0


def _spin(seconds):
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        for _ in range(10000):
            n += 1
    return n


def application(environ, start_response):
    if environ.get("PATH_INFO") == "/spin":
        q = parse_qs(environ.get("QUERY_STRING", ""))
        try:
            s = float(q.get("s", ["1"])[0])
        except ValueError:
            s = 1.0
        s = min(max(s, 0.0), _MAX_SECONDS)
        body = b"%d\n" % _spin(s)
    else:
        body = b"Hello!"
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
