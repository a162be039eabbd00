// Package upstream holds the sinks an accepted event goes to, without any Caddy dependency:
//
//   - Journal, the local sink: one JSON line per event in a rotated file, answered only once the
//     line is on disk;
//   - Forwarder, which posts an event to Context Services and returns its answer, or an
//     UnavailableError the caller may store the event for;
//   - Spool, store and forward in front of a Forwarder: events the upstream cannot take now are
//     stored durably and replayed concurrently, in order per lane (the service id), with a dead
//     letter for the events the upstream rejects; InspectSpool, ReadDeadLetters and
//     ResendDeadLetters are the operator's views of a spool directory.
//
// Journal and Spool share one durable append-only log, internal/wal: newline-framed records, group
// commit (concurrent appends share one fsync), torn-tail repair, rotation, readers with durable
// positions and the directory lock. This package keeps delivery and uses only the log's exported
// API; the log knows nothing of events, lanes or replay. Its storage names that callers see
// (FileSystem, StorageError, ErrSymlink, ErrDirLocked, MaxSpoolLine) are re-exported in storage.go,
// and SpoolPath is the one place that names a spool directory's files. Nothing here knows HTTP
// servers or Caddy configuration.
package upstream
