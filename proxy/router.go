package proxy

import (
	"net"

	"github.com/pyhost/pyhost/proxymsg"
	"sort"
	"strings"
	"time"
)

// router maps a Host and path to an app. It is immutable once built; a new
// table builds a new router that is swapped in atomically.
type router struct {
	exact    map[string][]route // host → routes, longest prefix first
	wildcard map[string][]route // "example.com" for "*.example.com"
	any      []route            // apps without domains (express mode)
	fallback []route            // the default app's, for a Host nobody claims
}

type route struct {
	prefix string // "/" or "/seg" without trailing slash
	app    *appPool
	// The app's per-request settings, fixed for this table, so the
	// request path reads them without a lock.
	maxBody        int64
	requestTimeout time.Duration
	static         []proxymsg.StaticMount // longest URL first
	httpsOnly      bool                   // plain HTTP gets a 308 to https
	hsts           string                 // Strict-Transport-Security over https; "": none
}

func newRouter() *router {
	return &router{exact: map[string][]route{}, wildcard: map[string][]route{}}
}

func (rt *router) add(domains []string, prefix string, app *appPool, maxBody int64, requestTimeout time.Duration, static ...proxymsg.StaticMount) {
	rt.addRoute(domains, newRoute(prefix, app, maxBody, requestTimeout, static...))
}

func newRoute(prefix string, app *appPool, maxBody int64, requestTimeout time.Duration, static ...proxymsg.StaticMount) route {
	r := route{prefix: normalizePrefix(prefix), app: app, maxBody: maxBody, requestTimeout: requestTimeout}
	r.static = append(r.static, static...)
	sort.SliceStable(r.static, func(i, j int) bool { return len(r.static[i].URL) > len(r.static[j].URL) })
	return r
}

func (rt *router) addRoute(domains []string, r route) {
	if len(domains) == 0 {
		rt.any = insertRoute(rt.any, r)
		return
	}
	for _, d := range domains {
		d = strings.ToLower(strings.TrimSuffix(d, "."))
		if suffix, ok := strings.CutPrefix(d, "*."); ok {
			rt.wildcard[suffix] = insertRoute(rt.wildcard[suffix], r)
		} else {
			rt.exact[d] = insertRoute(rt.exact[d], r)
		}
	}
}

func insertRoute(rs []route, r route) []route {
	rs = append(rs, r)
	sort.SliceStable(rs, func(i, j int) bool { return len(rs[i].prefix) > len(rs[j].prefix) })
	return rs
}

func normalizePrefix(p string) string {
	p = strings.TrimRight(p, "/")
	if p == "" {
		return "/"
	}
	if !strings.HasPrefix(p, "/") {
		p = "/" + p
	}
	return p
}

// match finds the app for host and path (R1, R2): the exact domain first,
// then the longest matching wildcard, then the catch-all; within a domain
// the longest prefix that matches whole path segments. A domain that
// matches but has no fitting prefix does not fall through to a wildcard:
// the site exists, the path does not.
func (rt *router) match(host, path string) (route, bool) {
	host = normalizeHost(host)
	if rs, ok := rt.exact[host]; ok {
		return matchPrefix(rs, path)
	}
	for h := host; ; {
		i := strings.IndexByte(h, '.')
		if i < 0 {
			break
		}
		h = h[i+1:]
		if rs, ok := rt.wildcard[h]; ok {
			return matchPrefix(rs, path)
		}
	}
	if len(rt.any) > 0 {
		return matchPrefix(rt.any, path)
	}
	if len(rt.fallback) > 0 {
		return matchPrefix(rt.fallback, path)
	}
	return route{}, false
}

// setDefault makes app's routes (one per url_prefix it has) answer hosts
// that no app claims.
func (rt *router) setDefault(r route) {
	rt.fallback = insertRoute(rt.fallback, r)
}

func matchPrefix(rs []route, path string) (route, bool) {
	for _, r := range rs {
		if prefixMatches(r.prefix, path) {
			return r, true
		}
	}
	return route{}, false
}

// prefixMatches is whole-segment matching: "/api" serves "/api" and
// "/api/x", never "/apix".
func prefixMatches(prefix, path string) bool {
	if prefix == "/" {
		return true
	}
	return strings.HasPrefix(path, prefix) && (len(path) == len(prefix) || path[len(prefix)] == '/')
}

// normalizeHost drops the port and a trailing dot and lowercases.
func normalizeHost(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	} else if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		host = host[1 : len(host)-1]
	}
	return strings.ToLower(strings.TrimSuffix(host, "."))
}
