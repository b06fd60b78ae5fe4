package master

import (
	"github.com/pyhost/pyhost/config"
	"github.com/pyhost/pyhost/proxymsg"
)

// readCertPairs reads the admin's [[tls]] files, as the master (root),
// and checks each pair as the proxy will load it: the proxy, which
// terminates TLS, gets the PEM down the channel and never a path, so
// private keys can stay readable by root alone (U7: the process that
// parses the network holds no key file access). An error names the file
// of the first broken pair; nothing is returned then.
func readCertPairs(certs []config.TLSCert) ([]proxymsg.CertPair, error) {
	out := make([]proxymsg.CertPair, 0, len(certs))
	for _, c := range certs {
		cert, key, err := config.ReadCertPair(c)
		if err != nil {
			return nil, err
		}
		if _, err := config.ParseCertPair(c.Cert, c.Key, cert, key); err != nil {
			return nil, err
		}
		out = append(out, proxymsg.CertPair{CertFile: c.Cert, KeyFile: c.Key, CertPEM: cert, KeyPEM: key})
	}
	return out, nil
}
