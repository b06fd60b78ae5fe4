package proxy

import "testing"

func TestRouterMatch(t *testing.T) {
	pools := map[string]*appPool{}
	app := func(k string) *appPool {
		if pools[k] == nil {
			pools[k] = &appPool{key: k}
		}
		return pools[k]
	}
	rt := newRouter()
	rt.add([]string{"example.com"}, "/", app("root"), 0, 0)
	rt.add([]string{"example.com"}, "/api", app("api"), 0, 0)
	rt.add([]string{"example.com"}, "/api/v2/", app("v2"), 0, 0)
	rt.add([]string{"*.example.com"}, "/", app("wild"), 0, 0)
	rt.add([]string{"*.deep.example.com"}, "/", app("deepwild"), 0, 0)
	rt.add([]string{"Blog.Example.ORG."}, "/blog", app("blog"), 0, 0)

	cases := []struct {
		host, path, want, prefix string
	}{
		{"example.com", "/", "root", "/"},
		{"EXAMPLE.COM:8080", "/x", "root", "/"},
		{"example.com", "/api", "api", "/api"},
		{"example.com", "/api/users", "api", "/api"},
		{"example.com", "/apix", "root", "/"},
		{"example.com", "/api/v2", "v2", "/api/v2"},
		{"example.com", "/api/v2/x", "v2", "/api/v2"},
		{"www.example.com", "/", "wild", "/"},
		{"a.b.example.com", "/", "wild", "/"},
		{"x.deep.example.com", "/", "deepwild", "/"},
		{"deep.example.com", "/", "wild", "/"},
		{"blog.example.org", "/blog/post", "blog", "/blog"},
		{"blog.example.org.", "/blog", "blog", "/blog"},
		{"blog.example.org", "/", "", ""},
		{"other.org", "/", "", ""},
		{"[::1]:80", "/", "", ""},
		{"", "/", "", ""},
	}
	for _, c := range cases {
		r, ok := rt.match(c.host, c.path)
		got := ""
		if ok {
			got = r.app.key
		}
		if got != c.want || (ok && r.prefix != c.prefix) {
			t.Errorf("match(%q, %q) = %q prefix %q, want %q prefix %q", c.host, c.path, got, r.prefix, c.want, c.prefix)
		}
	}
}

func TestRouterCatchAll(t *testing.T) {
	rt := newRouter()
	rt.add(nil, "/", &appPool{key: "express"}, 0, 0)
	for _, host := range []string{"", "anything", "127.0.0.1:8000"} {
		if r, ok := rt.match(host, "/x"); !ok || r.app.key != "express" {
			t.Errorf("host %q not served by the catch-all app", host)
		}
	}
}

func TestNormalizePrefix(t *testing.T) {
	for in, want := range map[string]string{"": "/", "/": "/", "/api/": "/api", "api": "/api", "/a/b": "/a/b"} {
		if got := normalizePrefix(in); got != want {
			t.Errorf("normalizePrefix(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRouterDefaultApp(t *testing.T) {
	rt := newRouter()
	blog := &appPool{key: "alice/blog"}
	api := &appPool{key: "alice/api"}
	rt.add([]string{"blog.test"}, "/", blog, 0, 0)
	rt.add([]string{"other.test"}, "/", &appPool{key: "bob/site"}, 0, 0)
	rt.setDefault(newRoute("/", blog, 0, 0))
	rt.setDefault(newRoute("/api", api, 0, 0))
	cases := []struct{ host, path, want string }{
		{"unknown.test", "/", "alice/blog"},
		{"203.0.113.9:8080", "/x", "alice/blog"},
		{"unknown.test", "/api/v1", "alice/api"},
		{"other.test", "/", "bob/site"}, // a claimed host keeps its app
	}
	for _, c := range cases {
		r, ok := rt.match(c.host, c.path)
		if !ok || r.app.key != c.want {
			t.Errorf("%s%s: %v %v, want %s", c.host, c.path, ok, r.app, c.want)
		}
	}
	// Without a default, an unclaimed host is still 404.
	plain := newRouter()
	plain.add([]string{"blog.test"}, "/", blog, 0, 0)
	if r, ok := plain.match("unknown.test", "/"); ok {
		t.Errorf("unclaimed host matched %s without a default app", r.app.key)
	}
}
