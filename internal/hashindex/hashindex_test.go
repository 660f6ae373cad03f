package hashindex

import "testing"

// Keys whose hashes collide are told apart, found after the key holding
// their hash's entry is removed, and removing either leaves the other.
func TestCollisions(t *testing.T) {
	var x Index[string]
	slots := map[int]string{}
	add := func(k string, h uint64, slot int) {
		t.Helper()
		x.Add(k, h, slot)
		slots[slot] = k
	}
	want := func(k string, h uint64, slot int, found bool) {
		t.Helper()
		i, ok := x.Find(k, h, func(i int) bool { return slots[i] == k })
		if ok != found || ok && i != slot {
			t.Fatalf("Find(%q) = %d, %v; want %d, %v", k, i, ok, slot, found)
		}
	}
	add("a", 7, 0)
	add("b", 7, 1)
	add("c", 8, 2)
	if x.Len() != 3 || x.Spilled() != 1 {
		t.Fatalf("Len %d, Spilled %d", x.Len(), x.Spilled())
	}
	want("a", 7, 0, true)
	want("b", 7, 1, true)
	want("c", 8, 2, true)
	want("d", 7, 0, false)
	want("a", 8, 0, false)
	x.Remove("a", 7, 0)
	delete(slots, 0)
	want("a", 7, 0, false)
	want("b", 7, 1, true)
	add("d", 7, 3) // takes the hash's entry, free again
	want("b", 7, 1, true)
	want("d", 7, 3, true)
	x.Remove("b", 7, 1)
	delete(slots, 1)
	want("b", 7, 1, false)
	want("d", 7, 3, true)
	if x.Len() != 2 || x.Spilled() != 0 {
		t.Fatalf("Len %d, Spilled %d", x.Len(), x.Spilled())
	}
}
