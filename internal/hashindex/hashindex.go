// Package hashindex is an index from keys to slots (ints) keyed by a 64-bit
// hash of the key that the caller computes, for the in-memory stores: its
// main map holds no pointers, so that the garbage collector never scans it,
// and hashing a uint64 is cheaper than hashing strings. The caller keeps
// each slot's key and tells Find whether a slot holds the key asked for;
// the rare keys whose hash another key's slot already holds spill to a map
// by key.
package hashindex

// Index maps keys to slots. Its zero value is ready to use.
type Index[K comparable] struct {
	byHash map[uint64]int
	spill  map[K]int // nil until a hash collides
}

// Find returns the slot of k, whose hash is h; holds reports whether a
// slot holds k.
func (x *Index[K]) Find(k K, h uint64, holds func(slot int) bool) (int, bool) {
	if i, ok := x.byHash[h]; ok && holds(i) {
		return i, true
	}
	if len(x.spill) > 0 { // k may be there even if byHash has no h (any more)
		i, ok := x.spill[k]
		return i, ok
	}
	return 0, false
}

// Add indexes slot as k's, whose hash is h; k must have no slot.
func (x *Index[K]) Add(k K, h uint64, slot int) {
	if x.byHash == nil {
		x.byHash = map[uint64]int{}
	}
	if _, taken := x.byHash[h]; !taken {
		x.byHash[h] = slot
		return
	}
	if x.spill == nil {
		x.spill = map[K]int{}
	}
	x.spill[k] = slot
}

// Remove drops k, whose hash is h and whose slot is slot.
func (x *Index[K]) Remove(k K, h uint64, slot int) {
	if i, ok := x.byHash[h]; ok && i == slot {
		delete(x.byHash, h)
		return
	}
	delete(x.spill, k)
}

// Len returns the number of keys indexed.
func (x *Index[K]) Len() int { return len(x.byHash) + len(x.spill) }

// Spilled returns the number of keys indexed by key (their hash collided).
func (x *Index[K]) Spilled() int { return len(x.spill) }
