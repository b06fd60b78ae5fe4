package proxy

import (
	"net/http"
	"net/netip"
	"testing"
)

func TestResolveForwarded(t *testing.T) {
	lb := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("127.0.0.1/32")}
	cases := []struct {
		name                string
		peer                string
		trusted             []netip.Prefix
		xff                 []string
		proto, fhost, rid   string
		client, chain       string
		scheme, host, reqID string
	}{
		{"no trusted proxies: headers ignored", "203.0.113.5", nil, []string{"1.2.3.4"}, "https", "evil.test", "forged",
			"203.0.113.5", "203.0.113.5", "http", "site.test", "ours"},
		{"untrusted peer: headers ignored", "203.0.113.5", lb, []string{"1.2.3.4"}, "https", "evil.test", "forged",
			"203.0.113.5", "203.0.113.5", "http", "site.test", "ours"},
		{"trusted load balancer", "10.0.0.2", lb, []string{"198.51.100.7"}, "https", "www.site.test", "lb-42",
			"198.51.100.7", "198.51.100.7, 10.0.0.2", "https", "www.site.test", "lb-42"},
		{"client's own forged hop is left of the real one", "10.0.0.2", lb, []string{"6.6.6.6, 198.51.100.7"}, "", "", "",
			"198.51.100.7", "198.51.100.7, 10.0.0.2", "http", "site.test", "ours"},
		{"a chain of trusted proxies", "127.0.0.1", lb, []string{"198.51.100.7", "10.1.1.1"}, "", "", "",
			"198.51.100.7", "198.51.100.7, 10.1.1.1, 127.0.0.1", "http", "site.test", "ours"},
		{"garbage stops the walk", "10.0.0.2", lb, []string{"198.51.100.7, not-an-ip, 10.9.9.9"}, "", "", "",
			"10.9.9.9", "10.9.9.9, 10.0.0.2", "http", "site.test", "ours"},
		{"trusted peer without X-Forwarded-For", "10.0.0.2", lb, nil, "ftp", "bad host\"", "has space",
			"10.0.0.2", "10.0.0.2", "http", "site.test", "ours"},
		{"IPv4-mapped peer", "::ffff:10.0.0.2", lb, []string{"::ffff:198.51.100.7"}, "HTTPS", "", "",
			"198.51.100.7", "::ffff:198.51.100.7, ::ffff:10.0.0.2", "https", "site.test", "ours"},
	}
	for _, c := range cases {
		h := http.Header{}
		for _, v := range c.xff {
			h.Add("X-Forwarded-For", v)
		}
		for k, v := range map[string]string{"X-Forwarded-Proto": c.proto, "X-Forwarded-Host": c.fhost, "X-Request-Id": c.rid} {
			if v != "" {
				h.Set(k, v)
			}
		}
		f := resolveForwarded(c.peer, c.trusted, h, "site.test", "http", "ours")
		want := forwarded{client: c.client, chain: c.chain, scheme: c.scheme, host: c.host, requestID: c.reqID}
		if f != want {
			t.Errorf("%s:\n got %+v\nwant %+v", c.name, f, want)
		}
	}
}
