//go:build !unix

package wal

// oNoFollow is 0 where open has no O_NOFOLLOW; OSFileSystem's Lstat check still refuses a link
// only after a failed open, so on these platforms a link to an existing file is followed.
const oNoFollow = 0
