package proxy

import (
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path"
	"strconv"
	"strings"
	"syscall"

	"github.com/pyhost/pyhost/proxymsg"
)

// staticFor returns the [[static]] mount that serves urlPath, if any,
// and the path below it. Mounts match whole segments: "/static/" serves
// "/static/a.css" and "/static", not "/staticfiles/".
func (r route) staticFor(urlPath string) (proxymsg.StaticMount, string, bool) {
	for _, m := range r.static {
		if rest, ok := strings.CutPrefix(urlPath, m.URL); ok {
			return m, rest, true
		}
		if urlPath == strings.TrimSuffix(m.URL, "/") {
			return m, "", true
		}
	}
	return proxymsg.StaticMount{}, "", false
}

// serveStatic answers a request for a static mount from its directory
// (R3): GET and HEAD only; Range, If-Modified-Since and ETag/If-None-Match
// through http.ServeContent; never a directory listing; never a file
// outside the directory. The file is opened through an os.Root on the
// directory, which opens each component relative to the one already open
// (openat, O_NOFOLLOW) and follows symlinks itself, refusing any that lead
// out: no path string is checked and then reopened. When the proxy runs
// as another user than the app's owner (system mode), it serves only
// world-readable files from a directory the owner owns: its own rights
// are not the tenant's.
func serveStatic(w http.ResponseWriter, r *http.Request, m proxymsg.StaticMount, rest string) {
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
	foreign := uint32(os.Geteuid()) != m.Owner
	if foreign && !ownedBy(root, m.Owner) {
		// The directory is not the tenant's (a mount on /var/log/pyhost,
		// or one turned into a symlink to it): nothing in it is served
		// with the proxy's rights.
		writeError(w, http.StatusForbidden, 0)
		return
	}
	// O_NONBLOCK: opening a FIFO would otherwise wait for a writer, and
	// a tenant could pile up blocked threads in the proxy.
	f, err := root.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
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
	if foreign && fi.Mode().Perm()&0o004 == 0 {
		writeError(w, http.StatusForbidden, 0) // readable by the proxy's user, not by everyone
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

// ownedBy reports whether the opened directory belongs to uid.
func ownedBy(root *os.Root, uid uint32) bool {
	fi, err := root.Stat(".")
	if err != nil {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && st.Uid == uid
}
