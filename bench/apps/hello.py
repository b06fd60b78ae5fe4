"""Hello-world WSGI application used by pyhost's benchmark harness.

GET (or HEAD) on "/" or "/hello" answers 200, text/plain, "Hello!" with a
Content-Length header. Anything else gets a short 404 or 405, so a
misrouted benchmark shows up as non-2xx responses instead of fast hellos.

Every stack in bench/run.sh loads this same file with Debian's
/usr/bin/python3; it must stay free of third-party imports.
"""

_HELLO = b"Hello!"
_PATHS = frozenset(("/", "/hello"))


def _reply(start_response, status, body, extra=()):
    headers = [
        ("Content-Type", "text/plain"),
        ("Content-Length", str(len(body))),
    ]
    headers.extend(extra)
    start_response(status, headers)
    return body


def application(environ, start_response):
    path = environ.get("PATH_INFO") or "/"
    if path not in _PATHS:
        return [_reply(start_response, "404 Not Found", b"Not found\n")]
    method = environ.get("REQUEST_METHOD", "GET")
    if method not in ("GET", "HEAD"):
        return [_reply(start_response, "405 Method Not Allowed",
                       b"Method not allowed\n", [("Allow", "GET, HEAD")])]
    body = _reply(start_response, "200 OK", _HELLO)
    # HEAD keeps the GET headers (Content-Length included) but sends no body.
    return [b""] if method == "HEAD" else [body]
