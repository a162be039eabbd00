package caddymodule

import (
	"strconv"

	"github.com/ucsedge/caddy-ucs/normalize"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// logReport writes the debug line of an intercepted request (repair kinds
// and offsets, never values) and warns about attribute names passed on.
func (h *Handler) logReport(m callMatch, tenant string, rep *normalize.Report) {
	if c := h.logger.Check(zap.DebugLevel, "event normalised"); c != nil {
		// zap keeps the array marshaler in an interface, which would move
		// the caller's Report (about 700 bytes) to the heap on every
		// request; a copy made here costs that only when debug is on.
		listed := *rep
		id := zap.Skip()
		if m.idName != "" {
			id = zap.String(m.idName, m.id)
		}
		c.Write(zap.String("operation", m.op.String()), zap.String("service_id", m.sid), id, zap.String("tenant", tenant), zap.Int("repairs", rep.Total()),
			zap.Bool("strict_input", rep.Strict), zap.Array("first_repairs", repairList{&listed}))
	}
	for i := range rep.NumMisses {
		m := rep.Misses[i]
		h.logger.Warn("business-attribute name not in the table, passed on unchanged",
			zap.String("field", m.Field), zap.ByteString("name", m.Name))
	}
}

// repairList logs the listed repairs as "kind@offset" strings.
type repairList struct{ rep *normalize.Report }

func (l repairList) MarshalLogArray(enc zapcore.ArrayEncoder) error {
	for i := range l.rep.NumListed {
		r := l.rep.First[i]
		enc.AppendString(r.Kind.String() + "@" + strconv.Itoa(r.Offset))
	}
	return nil
}
