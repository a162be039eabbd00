// Package wal is the durable, segmented, append-only log under the journal and the spool: one
// record per line (JSONL), appended with group commit (concurrent appends share one fsync),
// rotated by size into time-named segments, with a torn tail cut off at open.
//
//   - Open returns a Log for appending (Append, AppendAll, Close); OpenReadOnly describes the
//     files of a log another process may own, for inspection.
//   - A Reader (Log.NewReader) returns the complete records in order across rotations; a
//     position (a *Segment and an offset) is made durable as a Cursor (Log.Cursor) and found
//     again with Log.Resolve; Log.RemoveBefore deletes the segments behind a reader's mark.
//   - FileSystem is the seam through which tests inject faults; OSFileSystem refuses symbolic
//     links. LockDir takes a directory's exclusive lock.
//   - The rotated files' names are spelled in one function (rotatedName; RotatedPath and
//     IsFileOf for outsiders).
//
// It knows nothing of what the records mean: the caller keeps its positions, its file names and
// its delivery. It imports nothing of this module.
package wal
