package config

import (
	"strings"
	"testing"
	"time"
)

func TestParseSize(t *testing.T) {
	good := []struct {
		in   string
		want int64
	}{
		{"0", 0},
		{"512", 512},
		{"512B", 512},
		{"1KiB", 1024},
		{"300MiB", 300 << 20},
		{"300 MiB", 300 << 20},
		{" 2GiB ", 2 << 30},
		{"2gib", 2 << 30},
		{"1TiB", 1 << 40},
		{"1.5GiB", 1536 << 20},
		{"0.5KiB", 512},
		{"8589934591GiB", 8589934591 << 30},
		{"1PiB", 1 << 50},
	}
	for _, c := range good {
		got, err := ParseSize(c.in)
		if err != nil || got != c.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", c.in, got, err, c.want)
		}
	}
	bad := []struct {
		in, msg string
	}{
		{"300MB", `"300MB" is not a size; use a number with KiB, MiB or GiB, like "300MiB" (MB is ambiguous)`},
		{"1GB", `like "1GiB" (GB is ambiguous)`},
		{"4kb", `like "4KiB"`},
		{"300M", `like "300MiB" (M is ambiguous)`},
		{"", `"" is not a size`},
		{"MiB", `"MiB" is not a size`},
		{"lots", `"lots" is not a size; use a number with KiB, MiB or GiB, like "300MiB"`},
		{"-5MiB", "not negative"},
		{"1.2.3MiB", "is not a size"},
		{".5MiB", "is not a size"},
		{"5.MiB", "is not a size"},
		{"1e3", "is not a size"},
		{"0x10", "is not a size"},
		{"10 EiB", "is not a size"},
		{"10PB", `like "10PiB" (PB is ambiguous)`},
		{"0.3KiB", `"0.3KiB" is not a whole number of bytes; use a smaller unit, like "307B"`},
		{"1.5", `"1.5" is not a whole number of bytes`},
		{"99999999999TiB", "too large"},
		{"9223372036854775808", "too large"},
	}
	for _, c := range bad {
		_, err := ParseSize(c.in)
		if err == nil || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("ParseSize(%q): error %v, want it to contain %q", c.in, err, c.msg)
		}
	}
}

func TestFormatSize(t *testing.T) {
	cases := map[int64]string{
		0: "0", 1: "1B", 1023: "1023B", 1024: "1KiB", 1536: "1536B", 1536 * KiB: "1536KiB",
		300 * MiB: "300MiB", TiB: "1TiB", PiB: "1PiB",
	}
	for n, want := range cases {
		if got := FormatSize(n); got != want {
			t.Errorf("FormatSize(%d) = %q, want %q", n, got, want)
		}
		if back, err := ParseSize(FormatSize(n)); err != nil || back != n {
			t.Errorf("ParseSize(FormatSize(%d)) = %d, %v", n, back, err)
		}
	}
}

func TestParseDuration(t *testing.T) {
	good := map[string]time.Duration{
		"0": 0, "0s": 0, "60s": time.Minute, "1m30s": 90 * time.Second, "500ms": 500 * time.Millisecond,
		"2h": 2 * time.Hour, " 15s ": 15 * time.Second, "1.5s": 1500 * time.Millisecond,
	}
	for in, want := range good {
		got, err := ParseDuration(in)
		if err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	bad := map[string]string{
		"60":    `"60" is not a duration; use a number with a unit (ms, s, m or h), like "30s"`,
		"":      "is not a duration",
		"1 day": "is not a duration",
		"5d":    "is not a duration",
		"-5s":   `"-5s" is negative; use 0 or a positive duration, like "30s"`,
	}
	for in, msg := range bad {
		_, err := ParseDuration(in)
		if err == nil || err.Error() != msg && !strings.Contains(err.Error(), msg) {
			t.Errorf("ParseDuration(%q): error %v, want %q", in, err, msg)
		}
	}
}

func TestFormatDuration(t *testing.T) {
	cases := map[time.Duration]string{
		24 * time.Hour: "24h", time.Hour: "1h", 90 * time.Minute: "1h30m", time.Minute: "1m",
		90 * time.Second: "1m30s", time.Second: "1s", time.Millisecond: "1ms", 720 * time.Hour: "720h", 0: "0s",
	}
	for d, want := range cases {
		if got := formatDuration(d); got != want {
			t.Errorf("formatDuration(%v) = %q, want %q", d, got, want)
		}
	}
}
