package metrics

import (
	"bytes"
	"fmt"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
)

// public are the families every caller of `pyctl metrics` may see: they
// tell nothing of another tenant.
var public = map[string]bool{BuildInfo: true, StartTime: true}

// Text encodes fams in the Prometheus text format, keeping, unless all
// is set, only the series of the apps in keys ("user/app") and the
// public families. A family left with no series is left out.
func Text(fams []*dto.MetricFamily, all bool, keys []string) (string, error) {
	want := make(map[string]bool, len(keys))
	for _, k := range keys {
		want[k] = true
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
	for _, f := range fams {
		if !all && !public[f.GetName()] {
			f = filterFamily(f, want)
			if f == nil {
				continue
			}
		}
		if err := enc.Encode(f); err != nil {
			return "", fmt.Errorf("encode %s: %w", f.GetName(), err)
		}
	}
	return buf.String(), nil
}

// filterFamily is f with only the series of the apps in want, nil if
// none is left. A series without user and app labels is nobody's app's.
func filterFamily(f *dto.MetricFamily, want map[string]bool) *dto.MetricFamily {
	var keep []*dto.Metric
	for _, m := range f.Metric {
		var user, app string
		for _, l := range m.Label {
			switch l.GetName() {
			case "user":
				user = l.GetValue()
			case "app":
				app = l.GetValue()
			}
		}
		if user != "" && want[user+"/"+app] {
			keep = append(keep, m)
		}
	}
	if len(keep) == 0 {
		return nil
	}
	return &dto.MetricFamily{Name: f.Name, Help: f.Help, Type: f.Type, Unit: f.Unit, Metric: keep}
}
