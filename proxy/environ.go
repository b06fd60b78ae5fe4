package proxy

import (
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"

	"github.com/pyhost/pyhost/wsgiadapter"
)

// hopByHop request headers describe the client's connection to us, not
// the request, and are not passed to the app.
var hopByHop = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Proxy-Connection": true,
	"Te": true, "Transfer-Encoding": true, "Upgrade": true, "Proxy-Authorization": true,
	// Not hop-by-hop, but never the client's to set: HTTP_PROXY is
	// where CGI-era libraries look for an outgoing proxy ("httpoxy",
	// CVE-2016-5385), and X-Real-Ip is set by the proxy (buildEnviron).
	"Proxy": true, "X-Real-Ip": true,
}

// reqInfo is what the handler knows about a request beyond *http.Request.
type reqInfo struct {
	prefix     string // the route's url_prefix, "/" for the root
	scheme     string
	requestID  string
	remoteAddr string // the client, after trusted-proxy handling
	remotePort string
	serverPort string
	// serverAddr is the address the client connected to, SERVER_NAME
	// when the request names no host (HTTP/1.0 without Host).
	serverAddr netip.Addr
	// forwardedFor and forwardedHost are set for the app as
	// X-Forwarded-For and X-Forwarded-Host (with X-Forwarded-Proto from
	// scheme), replacing whatever the client sent (R8).
	forwardedFor  string
	forwardedHost string
}

// buildEnviron fills env with the CGI part of the WSGI environ (PEP 3333).
// Values are the raw request bytes; the worker decodes them as latin-1.
func buildEnviron(env wsgiadapter.Environ, r *http.Request, ri reqInfo) wsgiadapter.Environ {
	path := r.URL.Path
	script := ""
	if ri.prefix != "/" {
		script = ri.prefix
		path = path[len(ri.prefix):]
	}
	host := r.Host
	serverName := host
	if h, _, err := net.SplitHostPort(host); err == nil {
		serverName = h
	}
	if host == "" {
		// HTTP/1.0 without Host: PEP 3333 rebuilds the URL from
		// SERVER_NAME and SERVER_PORT, so they are the address the client
		// reached, as gunicorn has them (an IPv6 one bracketed, as in a
		// URL).
		serverName = "localhost"
		if a := ri.serverAddr.Unmap(); a.Is4() {
			serverName = a.String()
		} else if a.IsValid() {
			serverName = "[" + a.String() + "]"
		}
	}
	env = append(env,
		"REQUEST_METHOD", r.Method,
		"SCRIPT_NAME", script,
		"PATH_INFO", path,
		"QUERY_STRING", r.URL.RawQuery,
		"REQUEST_URI", r.RequestURI,
		"SERVER_NAME", serverName,
		"SERVER_PORT", ri.serverPort,
		"SERVER_PROTOCOL", r.Proto,
		"REMOTE_ADDR", ri.remoteAddr,
		"REMOTE_PORT", ri.remotePort,
		"wsgi.url_scheme", ri.scheme,
		"HTTP_X_REQUEST_ID", ri.requestID,
		// X-Real-Ip is the resolved client, as nginx's
		// "proxy_set_header X-Real-IP $remote_addr" sets it: apps that
		// trust it, as many behind nginx do, get the truth.
		"HTTP_X_REAL_IP", ri.remoteAddr,
	)
	if ri.scheme == "https" {
		// CGI's flag, which Django's request.is_secure() and others
		// read beside wsgi.url_scheme: on whenever the scheme is https,
		// over this proxy's TLS or a trusted proxy's (R8).
		env = append(env, "HTTPS", "on")
	}
	if host != "" {
		// None sent, none made up (CGI: HTTP_* are the client's headers).
		env = append(env, "HTTP_HOST", host)
	}
	if ri.forwardedFor != "" {
		env = append(env,
			"HTTP_X_FORWARDED_FOR", ri.forwardedFor,
			"HTTP_X_FORWARDED_PROTO", ri.scheme,
			"HTTP_X_FORWARDED_HOST", ri.forwardedHost,
		)
	}
	if r.ContentLength > 0 || (r.ContentLength == 0 && r.Header.Get("Content-Length") != "") {
		env = append(env, "CONTENT_LENGTH", strconv.FormatInt(r.ContentLength, 10))
	}
	conn := r.Header["Connection"]
	for name, values := range r.Header {
		switch {
		case name == "Content-Type":
			env = append(env, "CONTENT_TYPE", values[0])
			continue
		case name == "Content-Length", name == "X-Request-Id", name == "Host", hopByHop[name]:
			continue
		case ri.forwardedFor != "" && (name == "X-Forwarded-For" || name == "X-Forwarded-Proto" || name == "X-Forwarded-Host"):
			continue // ours replace them
		case conn != nil && connectionListed(conn, name):
			continue // hop-by-hop by the client's own say
		case strings.IndexByte(name, '_') >= 0:
			// "X_Forwarded_For" would become HTTP_X_FORWARDED_FOR and
			// spoof the real header (R8).
			continue
		}
		sep := ", "
		if name == "Cookie" {
			sep = "; "
		}
		env = append(env, cgiName(name), strings.Join(values, sep))
	}
	return env
}

// cgiName turns "User-Agent" into "HTTP_USER_AGENT".
func cgiName(name string) string {
	b := make([]byte, 0, 5+len(name))
	b = append(b, "HTTP_"...)
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c == '-':
			c = '_'
		case 'a' <= c && c <= 'z':
			c -= 'a' - 'A'
		}
		b = append(b, c)
	}
	return string(b)
}
