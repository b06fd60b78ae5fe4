package acme

import (
	"errors"
	"testing"
)

func TestCheckName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"example.com", true},
		{"www.example.com", true},
		{"a-b.c0.example.co.uk", true},
		{"xn--bcher-kva.example", false}, // .example is special-use
		{"xn--bcher-kva.de", true},
		{"", false},
		{"*.example.com", false},
		{"a.*.example.com", false},
		{"localhost", false},
		{"app.localhost", false},
		{"printer.local", false},
		{"shop.test", false},
		{"x.invalid", false},
		{"corp.internal", false},
		{"nas.home.arpa", false},
		{"abc.onion", false},
		{"intranet", false},
		{"10.0.0.1", false},
		{"1.2.3.4", false},
		{"::1", false},
		{"[2001:db8::1]", false},
		{"999.1.1.1", false}, // numeric top label
		{"-a.example.com", false},
		{"a-.example.com", false},
		{"a..example.com", false},
		{"a_b.example.com", false},
		{"a b.example.com", false},
		{"bücher.de", false},
		{"a.example.com/path", false},
		{string(make([]byte, 64)) + ".com", false},
	} {
		err := CheckName(NormalizeName(tc.name))
		if (err == nil) != tc.ok {
			t.Errorf("CheckName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrNotEligible) {
			t.Errorf("CheckName(%q) = %v, not wrapping ErrNotEligible", tc.name, err)
		}
	}
}

func TestNormalizeName(t *testing.T) {
	for in, want := range map[string]string{
		"Example.COM.":  "example.com",
		" www.a.b ":     "www.a.b",
		"example.com..": "example.com.",
	} {
		if got := NormalizeName(in); got != want {
			t.Errorf("NormalizeName(%q) = %q, want %q", in, got, want)
		}
	}
}
