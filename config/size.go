package config

import (
	"fmt"
	"math"
	"math/big"
	"strconv"
	"strings"
	"time"
)

// Byte sizes, binary as the units that name them.
const (
	KiB int64 = 1 << (10 * (iota + 1))
	MiB
	GiB
	TiB
	PiB
)

var sizeUnits = map[string]int64{"": 1, "b": 1, "kib": KiB, "mib": MiB, "gib": GiB, "tib": TiB, "pib": PiB}

// Decimal and bare units that people write but that are ambiguous (is
// "MB" 10^6 or 2^20 bytes?), mapped to the unit to suggest instead.
var ambiguousUnits = map[string]string{
	"k": "KiB", "kb": "KiB", "m": "MiB", "mb": "MiB", "g": "GiB", "gb": "GiB", "t": "TiB", "tb": "TiB", "p": "PiB", "pb": "PiB",
}

// ParseSize parses a byte size: a whole or decimal number, optionally
// followed by B, KiB, MiB, GiB, TiB or PiB (in any case, with or without a
// blank between). A plain number is bytes. "1.5GiB" is fine, as long as
// it comes to a whole number of bytes. KB, MB, GB (and K, M, G) are
// refused with a hint: whether they mean powers of 10 or of 2 depends on
// who wrote them. The error text names what would be valid and never
// names a key; callers add that.
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	end := 0
	for end < len(t) && (t[end] >= '0' && t[end] <= '9' || t[end] == '.') {
		end++
	}
	num, unit := t[:end], strings.TrimSpace(t[end:])
	like := `"300MiB"`
	if num != "" && !strings.ContainsAny(num, ".") {
		like = strconv.Quote(num + "MiB")
	}
	if strings.HasPrefix(t, "-") {
		return 0, fmt.Errorf("%q is not a size: sizes are not negative; use a number with KiB, MiB or GiB, like %s", s, `"300MiB"`)
	}
	if u, ok := ambiguousUnits[strings.ToLower(unit)]; ok && num != "" {
		return 0, fmt.Errorf("%q is not a size; use a number with KiB, MiB or GiB, like %q (%s is ambiguous)", s, num+u, unit)
	}
	mult, ok := sizeUnits[strings.ToLower(unit)]
	if !ok || num == "" || num[0] == '.' || num[len(num)-1] == '.' || strings.Count(num, ".") > 1 {
		return 0, fmt.Errorf("%q is not a size; use a number with KiB, MiB or GiB, like %s", s, like)
	}
	r, ok := new(big.Rat).SetString(num)
	if !ok {
		return 0, fmt.Errorf("%q is not a size; use a number with KiB, MiB or GiB, like %s", s, like)
	}
	r.Mul(r, new(big.Rat).SetInt64(mult))
	if !r.IsInt() {
		if w := wholeIn(num, unit); w != "" {
			return 0, fmt.Errorf("%q is not a whole number of bytes; use a smaller unit, like %q", s, w)
		}
		return 0, fmt.Errorf("%q is not a whole number of bytes", s)
	}
	if !r.Num().IsInt64() {
		return 0, fmt.Errorf("%q is too large; sizes go up to 8191PiB", s)
	}
	return r.Num().Int64(), nil
}

// wholeIn suggests num unit in the next smaller unit, for a hint; "" when
// there is none.
func wholeIn(num, unit string) string {
	smaller := map[string]string{"kib": "B", "mib": "KiB", "gib": "MiB", "tib": "GiB", "pib": "TiB"}[strings.ToLower(unit)]
	f, err := strconv.ParseFloat(num, 64)
	if smaller == "" || err != nil || f > 1e15 {
		return ""
	}
	return strconv.FormatFloat(math.Round(f*1024), 'f', -1, 64) + smaller
}

// FormatSize renders n bytes in the largest unit that divides it: 0,
// "512B", "300MiB", "1536KiB". ParseSize reads it back.
func FormatSize(n int64) string {
	if n == 0 {
		return "0"
	}
	for _, u := range []struct {
		n    int64
		name string
	}{{PiB, "PiB"}, {TiB, "TiB"}, {GiB, "GiB"}, {MiB, "MiB"}, {KiB, "KiB"}} {
		if n%u.n == 0 {
			return strconv.FormatInt(n/u.n, 10) + u.name
		}
	}
	return strconv.FormatInt(n, 10) + "B"
}

// ParseDuration parses a duration in Go's syntax ("90s", "1m30s",
// "500ms", "2h"; "0" needs no unit) and refuses negative ones. The error
// text names what would be valid and never names a key.
func ParseDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration; use a number with a unit (ms, s, m or h), like %q", s, "30s")
	}
	if d < 0 {
		return 0, fmt.Errorf("%q is negative; use 0 or a positive duration, like %q", s, "30s")
	}
	return d, nil
}

// formatDuration renders d as a config file would: "24h", "1m30s", "500ms".
func formatDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}
