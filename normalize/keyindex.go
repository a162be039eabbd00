package normalize

// keyIndex maps key hashes to member indexes for the duplicate-key check of
// large objects. It is an open-addressing table in one slice rather than a Go
// map so that it can stay in the scratch pool at any size: a reset bumps a
// generation number instead of clearing the slots, so one huge body neither
// allocates on every later call nor makes every later reset slow.
type keyIndex struct {
	slots []keySlot // length a power of two, or 0
	gen   uint32    // slots with another gen are empty
	n     int       // live entries
}

type keySlot struct {
	hash   uint64
	member int32
	gen    uint32
}

// maxPooledKeySlots bounds the table kept in the pool (16 B a slot: 4 MiB),
// enough for the objects of a max_body-sized body with short keys.
const maxPooledKeySlots = 1 << 18

// lookupOrInsert returns the member stored under h, or stores idx under h
// and reports false.
func (t *keyIndex) lookupOrInsert(h uint64, idx int) (int, bool) {
	if t.gen == 0 {
		t.gen = 1 // zeroed slots are then empty
	}
	if (t.n+1)*4 > len(t.slots)*3 {
		t.grow()
	}
	mask := uint64(len(t.slots) - 1)
	for p := h & mask; ; p = (p + 1) & mask {
		s := &t.slots[p]
		if s.gen != t.gen {
			*s = keySlot{hash: h, member: int32(idx), gen: t.gen}
			t.n++
			return 0, false
		}
		if s.hash == h {
			return int(s.member), true
		}
	}
}

// grow doubles the table (64 slots at first) and re-inserts the live entries.
func (t *keyIndex) grow() {
	old, gen := t.slots, t.gen
	t.slots = make([]keySlot, max(64, 2*len(old)))
	t.gen, t.n = 1, 0
	mask := uint64(len(t.slots) - 1)
	for _, s := range old {
		if s.gen != gen {
			continue
		}
		p := s.hash & mask
		for t.slots[p].gen == t.gen {
			p = (p + 1) & mask
		}
		s.gen = t.gen
		t.slots[p] = s
		t.n++
	}
}

// reset empties the table in O(1), or drops it when it is too large to keep.
func (t *keyIndex) reset() {
	if len(t.slots) > maxPooledKeySlots {
		*t = keyIndex{}
		return
	}
	if t.n == 0 {
		return
	}
	t.n = 0
	t.gen++
	if t.gen == 0 { // wrapped: old generations would look live again
		clear(t.slots)
		t.gen = 1
	}
}
