//go:build !unix

package caddymodule

// canWrite cannot ask without opening the file here: the open at start
// reports what is not writable.
func canWrite(string, bool) error { return nil }
