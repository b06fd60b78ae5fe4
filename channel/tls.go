package channel

// CertPair is one [[tls]] certificate as the master read it, as root,
// from the admin's files: the proxy gets the PEM, never a path it could
// not read. The file names are for error messages and logs.
type CertPair struct {
	CertFile string `json:"cert_file"`
	KeyFile  string `json:"key_file"`
	CertPEM  []byte `json:"cert_pem"`
	KeyPEM   []byte `json:"key_pem"`
}
