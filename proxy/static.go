package proxy

import (
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path"
	"strconv"
	"strings"

	"github.com/pyhost/pyhost/channel"
)

// staticFor returns the [[static]] mount that serves urlPath, if any,
// and the path below it. Mounts match whole segments: "/static/" serves
// "/static/a.css" and "/static", not "/staticfiles/".
func (r route) staticFor(urlPath string) (channel.StaticMount, string, bool) {
	for _, m := range r.static {
		if rest, ok := strings.CutPrefix(urlPath, m.URL); ok {
			return m, rest, true
		}
		if urlPath == strings.TrimSuffix(m.URL, "/") {
			return m, "", true
		}
	}
	return channel.StaticMount{}, "", false
}

// serveStatic answers a request for a static mount from its directory
// (R3): GET and HEAD only; Range, If-Modified-Since and ETag/If-None-Match
// through http.ServeContent; never a directory listing; never a file
// outside the directory. The file is opened through an os.Root on the
// directory, so ".." (however encoded: the path is already decoded here)
// and symlinks that lead out are refused by the kernel (openat2's
// RESOLVE_BENEATH), not by string checks alone.
func serveStatic(w http.ResponseWriter, r *http.Request, m channel.StaticMount, rest string) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeError(w, http.StatusMethodNotAllowed, 0)
		return
	}
	name := strings.TrimPrefix(path.Clean("/"+rest), "/")
	if name == "" || strings.IndexByte(rest, 0) >= 0 || hasDotDot(rest) {
		writeErrorText(w, http.StatusNotFound, notFound, 0)
		return
	}
	root, err := os.OpenRoot(m.Dir)
	if err != nil {
		staticError(w, err)
		return
	}
	defer root.Close()
	f, err := root.Open(name)
	if err != nil {
		staticError(w, err)
		return
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		writeErrorText(w, http.StatusNotFound, notFound, 0) // a directory is never listed
		return
	}
	// A strong validator from what changes when the file does.
	w.Header().Set("ETag", `"`+strconv.FormatInt(fi.Size(), 36)+"-"+strconv.FormatInt(fi.ModTime().UnixNano(), 36)+`"`)
	http.ServeContent(w, r, fi.Name(), fi.ModTime(), f)
}

// hasDotDot reports a ".." segment: a request that climbs is refused
// outright rather than cleaned into some other file.
func hasDotDot(p string) bool {
	for _, seg := range strings.Split(p, "/") {
		if seg == ".." {
			return true
		}
	}
	return false
}

// notFound is a static mount's 404: the site exists, the file does not.
const notFound = "404 Not Found\n"

// staticError answers an open error with no more than needed: missing
// and escaping both read as 404; unreadable (to the proxy's user) is 403.
func staticError(w http.ResponseWriter, err error) {
	if errors.Is(err, fs.ErrPermission) {
		writeError(w, http.StatusForbidden, 0)
		return
	}
	writeErrorText(w, http.StatusNotFound, notFound, 0)
}
