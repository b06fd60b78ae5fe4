package acme

import (
	"sort"

	"github.com/hashicorp/go-hclog"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// hclogCore is a zapcore.Core that writes through an hclog.Logger, so that
// certmagic (which logs with zap) and acmez (slog, bridged to zap by zapslog)
// land in the proxy's one log with the project's format and level. shift
// lowers the level of every entry by that many steps (acmez reports each
// protocol step at info, which is debug detail for an admin).
type hclogCore struct {
	log    hclog.Logger
	fields []zapcore.Field
	shift  int
}

func newZap(log hclog.Logger, shift int) *zap.Logger {
	return zap.New(hclogCore{log: log, shift: shift})
}

func (c hclogCore) level(l zapcore.Level) hclog.Level {
	var h hclog.Level
	switch {
	case l <= zapcore.DebugLevel:
		h = hclog.Debug
	case l == zapcore.InfoLevel:
		h = hclog.Info
	case l == zapcore.WarnLevel:
		h = hclog.Warn
	default:
		h = hclog.Error
	}
	h -= hclog.Level(c.shift)
	if h < hclog.Trace {
		h = hclog.Trace
	}
	return h
}

func (c hclogCore) Enabled(l zapcore.Level) bool {
	return c.log.GetLevel() <= c.level(l)
}

func (c hclogCore) With(fields []zapcore.Field) zapcore.Core {
	all := make([]zapcore.Field, 0, len(c.fields)+len(fields))
	all = append(append(all, c.fields...), fields...)
	return hclogCore{log: c.log, fields: all, shift: c.shift}
}

func (c hclogCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c hclogCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range c.fields {
		f.AddTo(enc)
	}
	for _, f := range fields {
		f.AddTo(enc)
	}
	keys := make([]string, 0, len(enc.Fields))
	for k := range enc.Fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	args := make([]any, 0, 2*len(keys)+2)
	if e.LoggerName != "" {
		args = append(args, "component", e.LoggerName)
	}
	for _, k := range keys {
		args = append(args, k, enc.Fields[k])
	}
	c.log.Log(c.level(e.Level), e.Message, args...)
	return nil
}

func (hclogCore) Sync() error { return nil }
