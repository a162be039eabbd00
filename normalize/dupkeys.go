package normalize

import (
	"bytes"
	"hash/maphash"
)

// keySeed seeds the hash of keys in large objects.
var keySeed = maphash.MakeSeed()

// Duplicate keys: the last value wins, at the position of the first
// occurrence (what Jackson, the server's parser, does). Small objects compare
// each new key with the earlier ones (after a per-object tag filter); larger
// ones use the pooled open-addressing index of keyindex.go. A duplicate
// marks the object for one rebuild when it closes.

// checkDup looks for an earlier member with the same key in the current object.
func (s *scanner) checkDup(idx int) {
	f := s.top()
	ms := s.sc.members
	k := s.dst[ms[idx].key:ms[idx].keyEnd]
	if f.count <= linearDupLimit {
		bit := uint64(1) << (ms[idx].tag * 0x9E3779B9 >> 26)
		if f.seen&bit == 0 {
			f.seen |= bit // no earlier key has this tag, so none is equal
			return
		}
		s.linearDup(f, idx, k)
		return
	}
	if !f.indexed {
		f.indexed = true
		for j := f.memStart; j < idx; j++ {
			if !ms[j].dup {
				s.sc.index.lookupOrInsert(s.keyHash(f, s.dst[ms[j].key:ms[j].keyEnd]), j)
			}
		}
	}
	j, ok := s.sc.index.lookupOrInsert(s.keyHash(f, k), idx)
	if !ok {
		return
	}
	if j >= f.memStart && j < idx && bytes.Equal(s.dst[ms[j].key:ms[j].keyEnd], k) {
		s.markDup(f, j, idx)
		return
	}
	// A hash collision: rare enough that a linear look is fine.
	s.linearDup(f, idx, k)
}

func (s *scanner) linearDup(f *frame, idx int, k []byte) {
	ms := s.sc.members
	tag := ms[idx].tag
	for j := f.memStart; j < idx; j++ {
		if ms[j].tag == tag && !ms[j].dup && bytes.Equal(s.dst[ms[j].key:ms[j].keyEnd], k) {
			s.markDup(f, j, idx)
			return
		}
	}
}

// keyTag summarises a quoted key (length, second and second-last byte)
// so that most unequal keys are told apart without comparing bytes.
func keyTag(k []byte) uint32 {
	return uint32(len(k))<<16 | uint32(k[1])<<8 | uint32(k[len(k)-2])
}

func (s *scanner) keyHash(f *frame, k []byte) uint64 {
	return maphash.Bytes(keySeed, k) ^ (f.serial * 0x9E3779B97F4A7C15)
}

func (s *scanner) markDup(f *frame, first, idx int) {
	ms := s.sc.members
	ms[idx].dup = true
	ms[first].last = idx
	f.dup = true
	s.repair(RepairDuplicateKey, ms[idx].off)
}

// rebuild rewrites the object of f (without its closing '}') so that each
// key appears once, at its first position, with its last value (Jackson's
// behaviour). It runs only for objects that had a duplicate, in O(size).
// The kept members' spans are moved to where they now are; the members
// flagged dup are gone from the output.
func (s *scanner) rebuild(f *frame) {
	ms := s.sc.members[f.memStart:]
	buf := append(s.sc.buf[:0], '{')
	first := true
	for j, m := range ms {
		if m.dup {
			continue
		}
		if !first {
			buf = append(buf, ',')
		}
		first = false
		lv := s.sc.members[m.last]
		key := f.out + len(buf)
		buf = append(buf, s.dst[m.key:m.keyEnd]...)
		keyEnd := f.out + len(buf)
		buf = append(buf, s.dst[lv.keyEnd:lv.end]...) // ':' and the value
		ms[j].key, ms[j].keyEnd, ms[j].end = key, keyEnd, f.out+len(buf)
	}
	s.dst = append(s.dst[:f.out], buf...)
	s.sc.buf = buf
}
