package proxy

import (
	"net/http"
	"strings"

	"github.com/pyhost/pyhost/wsgiadapter"
)

// Requests the proxy answers itself, and requests after which it closes
// the connection. Each follows what nginx or Go's own server does; the
// app never sees these requests, or sees them with the framing settled.

// maxRequestURI bounds the request target: nginx's 8 KiB
// (large_client_header_buffers) and Apache's LimitRequestLine. Longer is
// 414; the whole head is held to maxHeaderBytes (431) by net/http.
const maxRequestURI = 8 << 10

// refuse is the status the proxy answers r with before routing it, or 0
// to route it:
//   - CONNECT, TRACE and PRI (an HTTP/2 preface spoken to HTTP/1) are 501:
//     methods of the server, not of a resource, and none an app behind
//     this proxy can serve (TRACE would echo the client's cookies to a
//     script; CONNECT would make the app a tunnel);
//   - a target longer than maxRequestURI is 414;
//   - a path with a NUL (%00 decoded) is 400: the worker protocol cannot
//     carry it (NUL separates the environ), and no file or route has one.
func refuse(r *http.Request) int {
	switch r.Method {
	case http.MethodConnect, http.MethodTrace, "PRI":
		return http.StatusNotImplemented
	}
	if len(r.RequestURI) > maxRequestURI {
		return http.StatusRequestURITooLong
	}
	if strings.IndexByte(r.URL.Path, 0) >= 0 {
		return http.StatusBadRequest
	}
	return 0
}

// mustClose reports whether the connection closes after r's response,
// because r's framing cannot be trusted for the next request on it (RFC
// 9112 §6.1, request smuggling):
//   - a chunked HTTP/1.1 request, which may also have carried a
//     Content-Length (net/http drops it, chunked wins, so the proxy
//     cannot tell): "the server MUST close the connection after
//     responding";
//   - an HTTP/1.0 request with a body: net/http ignores Transfer-Encoding
//     on 1.0 and drops it, framing the body by Content-Length, so the
//     chunk data of a 1.0 request sent with both would be read as a
//     second request (a Content-Length is what lets that second request
//     start where the sender wants: without one the chunk-size line comes
//     first and is no request line a server takes). The RFC: treat such a
//     message as faulty and close the connection. A body-less 1.0
//     request keeps its keep-alive (ab -k).
func mustClose(r *http.Request) bool {
	if r.ProtoMajor != 1 {
		return false
	}
	if r.ProtoMinor == 0 {
		return r.ContentLength > 0
	}
	return len(r.TransferEncoding) > 0
}

// hasNUL reports whether any key or value of env holds a NUL, which the
// worker protocol refuses (wsgiadapter.AppendEnviron).
func hasNUL(env wsgiadapter.Environ) bool {
	for _, s := range env {
		if strings.IndexByte(s, 0) >= 0 {
			return true
		}
	}
	return false
}

// connectionListed reports whether the Connection header (its values
// conn) names the header name: such a header is about the client's
// connection to this proxy, hop-by-hop, and is not passed to the app
// (RFC 9110 §7.6.1).
func connectionListed(conn []string, name string) bool {
	for _, v := range conn {
		for v != "" {
			var tok string
			tok, v, _ = strings.Cut(v, ",")
			if strings.EqualFold(strings.TrimSpace(tok), name) {
				return true
			}
		}
	}
	return false
}
