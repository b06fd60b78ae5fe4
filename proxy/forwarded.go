package proxy

import (
	"net/http"
	"net/netip"
	"strings"
)

// forwarded is what the proxy tells the app about where a request came
// from (R8), decided once per request by resolveForwarded.
type forwarded struct {
	client    string // REMOTE_ADDR: the real client
	chain     string // X-Forwarded-For passed on: the trusted chain, then the peer
	scheme    string // wsgi.url_scheme and X-Forwarded-Proto
	host      string // X-Forwarded-Host
	requestID string // kept from a trusted proxy, else ours
}

// resolveForwarded applies trusted_proxies: only a peer inside one of
// trusted may say who the client is (X-Forwarded-For), which scheme and
// host it saw (X-Forwarded-Proto, -Host) and which request id it gave
// (X-Request-Id). The client is the rightmost address of the chain that is
// not itself a trusted proxy, so a client cannot forge its way in by
// sending its own X-Forwarded-For through a trusted proxy. From anyone
// else, those headers are replaced, never passed on.
//
// The headers are read only for a trusted peer: with no trusted_proxies,
// a request pays for none of this.
func resolveForwarded(peer string, trusted []netip.Prefix, h http.Header, host, scheme, ourID string) forwarded {
	f := forwarded{client: peer, chain: peer, scheme: scheme, host: host, requestID: ourID}
	if len(trusted) == 0 {
		return f
	}
	addr, err := netip.ParseAddr(peer)
	if err != nil || !isTrusted(addr.Unmap(), trusted) {
		return f
	}
	var hops []string
	for _, v := range h.Values("X-Forwarded-For") {
		for _, h := range strings.Split(v, ",") {
			if h = strings.TrimSpace(h); h != "" {
				hops = append(hops, h)
			}
		}
	}
	from := len(hops) // the client's index in hops
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(hops[i])
		if err != nil {
			break // garbage: believe nothing further left
		}
		f.client, from = a.Unmap().String(), i
		if !isTrusted(a.Unmap(), trusted) {
			break
		}
	}
	// The app gets the chain from the client on: hops left of it are the
	// client's own claims (an app taking the leftmost entry would believe
	// them).
	if from < len(hops) {
		f.chain = strings.Join(hops[from:], ", ") + ", " + peer
	}
	switch strings.ToLower(strings.TrimSpace(h.Get("X-Forwarded-Proto"))) {
	case "https":
		f.scheme = "https"
	case "http":
		f.scheme = "http"
	}
	if fwdHost := strings.TrimSpace(h.Get("X-Forwarded-Host")); validToken(fwdHost, 255) {
		f.host = fwdHost
	}
	if rid := h.Get("X-Request-Id"); validToken(rid, 128) {
		f.requestID = rid
	}
	return f
}

func isTrusted(a netip.Addr, trusted []netip.Prefix) bool {
	for _, p := range trusted {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// validToken: 1 to max printable ASCII bytes without spaces or quotes,
// safe to pass on and to log.
func validToken(s string, max int) bool {
	if s == "" || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}
