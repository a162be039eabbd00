package caddymodule

import (
	"slices"
	"sync/atomic"

	"go.uber.org/zap/zapcore"
)

// liveCore writes through the log core of the newest config using the
// spool (its ctx.Logger()), so outage lines follow the live logging config;
// a config's log writers close when it is unloaded, which a core kept from
// the config that opened the spool would keep writing to.
type liveCore struct {
	cur  *atomic.Pointer[zapcore.Core]
	with []zapcore.Field
}

func newLiveCore(c zapcore.Core) *liveCore {
	l := &liveCore{cur: new(atomic.Pointer[zapcore.Core])}
	l.swap(c)
	return l
}

func (l *liveCore) swap(c zapcore.Core) { l.cur.Store(&c) }

// core is the current core with this one's fields. The spool logs rarely
// (outages, storage errors), so applying them per line costs nothing.
func (l *liveCore) core() zapcore.Core {
	c := *l.cur.Load()
	if len(l.with) > 0 {
		c = c.With(l.with)
	}
	return c
}

func (l *liveCore) Enabled(lvl zapcore.Level) bool { return (*l.cur.Load()).Enabled(lvl) }

func (l *liveCore) With(fields []zapcore.Field) zapcore.Core {
	return &liveCore{cur: l.cur, with: append(slices.Clip(l.with), fields...)}
}

// Check hands the entry to the current core's own Check, which may filter
// on more than the level (Caddy's include/exclude by logger name).
func (l *liveCore) Check(ent zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	return l.core().Check(ent, ce)
}

func (l *liveCore) Write(ent zapcore.Entry, fields []zapcore.Field) error {
	return l.core().Write(ent, fields)
}

func (l *liveCore) Sync() error { return (*l.cur.Load()).Sync() }
