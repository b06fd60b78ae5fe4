// Package control owns the control-socket API shared by the daemon
// (pyhostd) and its client (pyctl): the wire types, the typed errors, an
// HTTP server that authenticates callers by their peer credentials, and a
// typed client.
//
// The protocol is HTTP/1.1 with JSON bodies over a UNIX stream socket, in
// the manner of Tailscale's LocalAPI. Paths carry a version prefix (/v1/)
// so that a newer pyctl can tell an older daemon apart.
//
//	GET  /v1/status?app=NAME   200 {"apps":[AppStatus...]}
//	POST /v1/reload?app=NAME   200 NDJSON: {"progress":"..."}... then
//	                               {"ok":true} or an error line
//	POST /v1/reopen-logs       200 NDJSON: {"ok":true} or an error line
//
// Any other answer is an error: a non-2xx status with the body
// {"error":"...","code":"...","detail":"...","app":"..."} (detail and app
// only for reload_failed). Codes and statuses: access_denied 403,
// no_such_app 404, reload_failed 409, bad_request 400 (405 for a wrong
// method, 404 for an unknown path), internal 500 (503 when the request
// was cancelled). A reload that fails after its first progress line ends
// its 200 stream with the same body as its last line.
//
// Authorization is not done here. The server reads who is calling
// (SO_PEERCRED) and hands that Caller to the Backend, which decides what
// the caller may see and do (the master package implements Backend).
// Socket file modes are therefore not a security boundary: Listen makes
// the socket world-connectable on purpose.
package control
