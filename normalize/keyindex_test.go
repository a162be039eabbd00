package normalize

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestKeyIndexAgreesWithAMapAcrossResets(t *testing.T) {
	for _, tc := range []struct {
		name    string
		entries int
		resets  int
		gen     uint32 // starting generation, to cross the wrap-around
	}{
		{"small", 10, 3, 0},
		{"grows many times", 100_000, 2, 0},
		{"generation wraps", 500, 4, ^uint32(0) - 1},
		{"too large to keep", maxPooledKeySlots, 1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ix keyIndex
			ix.gen = tc.gen
			rng := rand.New(rand.NewPCG(1, 2))
			for round := 0; round <= tc.resets; round++ {
				want := map[uint64]int{}
				for i := range tc.entries {
					h := rng.Uint64() % uint64(4*tc.entries) // repeats on purpose
					got, found := ix.lookupOrInsert(h, i)
					first, seen := want[h]
					require.Equal(t, seen, found, "round %d entry %d hash %d", round, i, h)
					if seen {
						assert.Equal(t, first, got)
					} else {
						want[h] = i
					}
				}
				assert.Equal(t, len(want), ix.n)
				ix.reset()
				assert.Zero(t, ix.n)
			}
		})
	}
}

func TestKeyIndexKeepsItsSlotsAcrossResetsUpToTheLimit(t *testing.T) {
	var ix keyIndex
	for i := range 5000 {
		ix.lookupOrInsert(uint64(i)*0x9E3779B97F4A7C15, i)
	}
	size := len(ix.slots)
	ix.reset()
	assert.Equal(t, size, len(ix.slots), "a table under the limit is kept for the next call")
	allocs := testing.AllocsPerRun(10, func() {
		for i := range 5000 {
			ix.lookupOrInsert(uint64(i)*0x9E3779B97F4A7C15, i)
		}
		ix.reset()
	})
	assert.Zero(t, allocs)
}
