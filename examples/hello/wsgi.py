"""The example app that `make serve` runs: a tiny WSGI app with a few pages
that show what pyhost passes to an app."""

import os
import time


def application(environ, start_response):
    path = environ.get("PATH_INFO", "/")
    if path == "/stream":
        start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
        return stream()
    if path == "/environ":
        body = "".join("%s = %r\n" % kv for kv in sorted(environ.items())).encode("utf-8")
        start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))])
        return [body]
    body = ("Hello from pyhost! (worker pid %d)\n" % os.getpid()).encode("utf-8")
    start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))])
    return [body]


def stream():
    for i in range(5):
        yield ("chunk %d\n" % i).encode("ascii")
        time.sleep(0.2)
