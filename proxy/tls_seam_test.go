package proxy

import "github.com/pyhost/pyhost/acme"

// The ACME seam fits package acme as it is: its Manager is the extra
// certificate source (Certs.SetExtra) and the HTTP-01 handler
// (Proxy.SetChallengeHandler), without an adapter.
var (
	_ CertSource       = (*acme.Manager)(nil)
	_ ChallengeHandler = (*acme.Manager)(nil)
)
