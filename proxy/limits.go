package proxy

import "time"

// Limits protect the proxy and the workers from slow or hostile clients.
// They are the [proxy] keys of the admin config (docs/config.md), sent
// down in the channel's Setup; the zero value of a field means its
// default (DefaultLimits), applied once by WithDefaults.
type Limits struct {
	// BufferRequestBody: a request body up to this many bytes is read
	// whole by the proxy before a worker thread is taken.
	BufferRequestBody int64
	// ClientBodyTimeout bounds each read of a request body (the time
	// between two reads), like nginx's client_body_timeout.
	ClientBodyTimeout time.Duration
	// SendTimeout bounds each write of a response to the client, like
	// nginx's send_timeout.
	SendTimeout time.Duration
	// MaxConns caps open client connections, in all and per client IP.
	MaxConns, MaxConnsPerIP int
	// KeepAliveTimeout closes an idle keep-alive connection.
	KeepAliveTimeout time.Duration
}

// DefaultLimits are the limits a field left zero takes.
var DefaultLimits = Limits{
	BufferRequestBody: 1 << 20,
	ClientBodyTimeout: 60 * time.Second,
	SendTimeout:       60 * time.Second,
	MaxConns:          10000,
	MaxConnsPerIP:     512,
	KeepAliveTimeout:  75 * time.Second,
}

// WithDefaults is l with every zero field set from DefaultLimits.
func (l Limits) WithDefaults() Limits {
	d := DefaultLimits
	if l.BufferRequestBody == 0 {
		l.BufferRequestBody = d.BufferRequestBody
	}
	if l.ClientBodyTimeout == 0 {
		l.ClientBodyTimeout = d.ClientBodyTimeout
	}
	if l.SendTimeout == 0 {
		l.SendTimeout = d.SendTimeout
	}
	if l.MaxConns == 0 {
		l.MaxConns = d.MaxConns
	}
	if l.MaxConnsPerIP == 0 {
		l.MaxConnsPerIP = d.MaxConnsPerIP
	}
	if l.KeepAliveTimeout == 0 {
		l.KeepAliveTimeout = d.KeepAliveTimeout
	}
	return l
}
