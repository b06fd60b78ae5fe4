package proxymsg

// CertPair is one [[tls]] certificate as the master read it, as root,
// from the admin's files: the proxy gets the PEM, never a path it could
// not read. The file names are for error messages and logs.
type CertPair struct {
	CertFile string `json:"cert_file"`
	KeyFile  string `json:"key_file"`
	CertPEM  []byte `json:"cert_pem"`
	KeyPEM   []byte `json:"key_pem"`
}

// ACME is [proxy] acme as the proxy needs it: the master reads the
// admin's files (the CA root) as root and prepares the storage directory,
// owned by the proxy's user; the proxy speaks to the CA. Which names to
// ask for the proxy takes from each Table (the domains of the apps the
// master admitted), and checks each against Patterns before any order.
type ACME struct {
	Email string `json:"email,omitempty"`
	// CA is the ACME directory URL (https://).
	CA string `json:"ca"`
	// CARootPEM, when set, is the only trust for the CA's own HTTPS
	// endpoint ([proxy] acme ca_root); empty: the system roots.
	CARootPEM []byte `json:"ca_root_pem,omitempty"`
	// Dir is the storage directory (DATA_DIR/acme), the proxy user's.
	Dir string `json:"dir"`
	// Patterns are every [users.*] domains pattern of the admin file: a
	// name none of them allows is never asked of the CA.
	Patterns []string `json:"patterns"`
	// DisableHTTP01 and DisableTLSALPN01 drop one challenge type
	// ([proxy] acme challenges).
	DisableHTTP01    bool `json:"disable_http01,omitempty"`
	DisableTLSALPN01 bool `json:"disable_tls_alpn01,omitempty"`
}

// ACMEConfig replaces the ACME settings (config reload); ACME nil turns
// automatic certificates off.
type ACMEConfig struct {
	ACME *ACME `json:"acme,omitempty"`
}
