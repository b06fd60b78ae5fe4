package proxy

import (
	"net/http"
	"strconv"
)

// Error pages are short plain text that names the status and nothing of
// the app, its paths or its errors (R10).
var errorText = map[int]string{
	http.StatusNotFound:              "404 Not Found: no site here\n",
	http.StatusRequestEntityTooLarge: "413 Request Entity Too Large\n",
	http.StatusBadGateway:            "502 Bad Gateway: the application worker failed\n",
	http.StatusServiceUnavailable:    "503 Service Unavailable: try again shortly\n",
	http.StatusGatewayTimeout:        "504 Gateway Timeout\n",
}

// writeError writes an error page. retryAfter > 0 adds Retry-After (seconds).
func writeError(w http.ResponseWriter, code int, retryAfter int) {
	text, ok := errorText[code]
	if !ok {
		text = strconv.Itoa(code) + " " + http.StatusText(code) + "\n"
	}
	writeErrorText(w, code, text, retryAfter)
}

// writeErrorText is writeError with a page of one's own. Headers set so
// far go, but X-Request-Id and Allow (which a 405 needs).
func writeErrorText(w http.ResponseWriter, code int, text string, retryAfter int) {
	h := w.Header()
	for k := range h {
		if k != "X-Request-Id" && k != "Allow" {
			delete(h, k)
		}
	}
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Content-Length", strconv.Itoa(len(text)))
	h.Set("Cache-Control", "no-store")
	if retryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(retryAfter))
	}
	w.WriteHeader(code)
	w.Write([]byte(text))
}
