package acme

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// ErrNotEligible is wrapped by every refusal of CheckName: the name can never
// get a certificate through HTTP-01 or TLS-ALPN-01 from a public CA, whatever
// the admin's policy says.
var ErrNotEligible = errors.New("not eligible for an ACME certificate")

// specialSuffixes are names no public CA issues for (RFC 6761 special-use
// names, RFC 6762's .local, ICANN's .internal, RFC 8375's home.arpa, RFC 7686's
// .onion). Asking would only fail validation and spend the account's failed
// authorization budget.
var specialSuffixes = []string{
	"localhost", "local", "test", "invalid", "example", "internal", "home.arpa", "onion",
}

// NormalizeName lowercases a host name and drops one trailing dot, the form
// names are compared and stored in. It does not validate: see CheckName.
func NormalizeName(name string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(name)), ".")
}

// CheckName reports whether name (already normalized) may be asked of an ACME
// CA with HTTP-01 or TLS-ALPN-01. It is the package's own floor under the
// admin's policy (Config.Allow): no wildcards (only DNS-01 can prove them),
// no IP addresses, no single-label names such as "localhost", no special-use
// names, nothing that is not a syntactically valid ASCII (A-label) DNS name.
// The error wraps ErrNotEligible.
func CheckName(name string) error {
	refuse := func(why string) error {
		return fmt.Errorf("%q: %w: %s", name, ErrNotEligible, why)
	}
	switch {
	case name == "":
		return refuse("empty name")
	case strings.Contains(name, "*"):
		return refuse("wildcard names need the DNS-01 challenge, which pyhost does not do")
	case len(name) > 253:
		return refuse("longer than 253 characters")
	}
	if _, err := netip.ParseAddr(strings.Trim(name, "[]")); err == nil {
		return refuse("IP addresses are not managed")
	}
	labels := strings.Split(name, ".")
	if len(labels) < 2 {
		return refuse("single-label names cannot be validated publicly")
	}
	for _, l := range labels {
		if err := checkLabel(l); err != "" {
			return refuse(err)
		}
	}
	for _, s := range specialSuffixes {
		if name == s || strings.HasSuffix(name, "."+s) {
			return refuse("special-use name (no public CA issues for ." + s + ")")
		}
	}
	// A name whose last label is all digits is an IPv4 address in disguise
	// or nothing at all; no top-level domain is numeric.
	if allDigits(labels[len(labels)-1]) {
		return refuse("numeric top-level label")
	}
	return nil
}

// checkLabel returns why l is not a valid LDH label, or "".
func checkLabel(l string) string {
	if l == "" {
		return "empty label"
	}
	if len(l) > 63 {
		return "label longer than 63 characters"
	}
	if l[0] == '-' || l[len(l)-1] == '-' {
		return "label starts or ends with a hyphen"
	}
	for i := 0; i < len(l); i++ {
		c := l[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			if c >= 0x80 {
				return "non-ASCII name (use its xn-- A-label form)"
			}
			return fmt.Sprintf("character %q is not allowed in a host name", c)
		}
	}
	return ""
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}
