// Package wsgiadapter owns the wire between the Go proxy and the Python
// workers: the frame format of docs/protocol.md (encoders and a decoder
// that never trusts its peer), the client side of a worker connection
// (Conn), and the Python worker script itself, embedded so that the single
// pyhostd binary can write it out for each app.
//
// It does not own connection pools, load balancing or HTTP; those are the
// proxy's. It does not start processes; that is package workerproc.
package wsgiadapter
