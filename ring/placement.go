package ring

import (
	"fmt"
	"slices"

	"github.com/buraksezer/consistent"
	"github.com/cespare/xxhash/v2"
)

// Placement parameters. They are part of RingHash: nodes that disagree on any
// of them would compute different owners for the same partition, so they
// refuse each other as members.
const (
	// virtualNodes is consistent's ReplicationFactor: points per member on
	// the hash circle. (It is not a replica count.)
	virtualNodes = 20
	// loadFactor bounds any member's share at ceil(partitions/members*1.25).
	loadFactor = 1.25
	// placementVersion names everything else that shapes placement and is not
	// a number above: the hasher, consistent's virtual-node key format
	// ("idx:name" since v1.1.0; older versions used "name+idx") and its
	// successor rule for replicas. Change it whenever any of them changes.
	placementVersion = "elock-ring/1 consistent@v1.1.0 hasher=xxhash64 vnode=idx:name replica=closestN"
)

// RingHash returns a short, stable identifier of the ring configuration for
// the given partition count. Two nodes place partitions identically iff their
// RingHash values are equal (given the same member set).
func RingHash(partitions int) string {
	s := fmt.Sprintf("%s partitions=%d vnodes=%d load=%g", placementVersion, partitions, virtualNodes, loadFactor)
	return fmt.Sprintf("%016x", xxhash.Sum64String(s))
}

// PartitionOf returns the partition of key: xxhash64(key) mod partitions. It
// is the same function as consistent's FindPartitionID with our hasher, kept
// separate so that routing a key needs no ring object. It panics if
// partitions < 1, which Validate-d configuration rules out.
func PartitionOf(key []byte, partitions int) int {
	if partitions < 1 {
		panic(fmt.Sprintf("ring: PartitionOf with %d partitions", partitions))
	}
	return int(xxhash.Sum64(key) % uint64(partitions))
}

// Assignment is the placement of one partition.
type Assignment struct {
	Owner   string
	Replica string // "" when there is only one member
}

// Place computes the owner and replica of every partition 0..partitions-1 for
// the member set ids. It is a pure function of the set: order and duplicates
// in ids do not matter. Owner != Replica always.
//
// The owner comes from consistent's bounded-load assignment, so no member owns
// more than ceil(partitions/len(ids)*1.25) partitions. The replica is
// consistent's GetClosestNForPartition(p, 2)[1]: the owner's successor on a
// circle of member-name hashes. Consequently the replica depends only on the
// owner (every partition owned by X has the same replica), and when an owner
// is removed its replica inherits only some of its partitions. Callers must
// move state explicitly; the ring never implies that a replica is ready.
//
// Place returns nil when ids is empty and panics if partitions < 1.
func Place(ids []string, partitions int) []Assignment {
	if partitions < 1 {
		panic(fmt.Sprintf("ring: Place with %d partitions", partitions))
	}
	set := slices.Clone(ids)
	slices.Sort(set)
	set = slices.Compact(set)
	if len(set) == 0 {
		return nil
	}
	members := make([]consistent.Member, len(set))
	for i, id := range set {
		members[i] = ringMember(id)
	}
	c := consistent.New(members, consistent.Config{
		PartitionCount:    partitions,
		ReplicationFactor: virtualNodes,
		Load:              loadFactor,
		Hasher:            xxhasher{},
	})
	n := min(2, len(set))
	out := make([]Assignment, partitions)
	for p := range out {
		ms, err := c.GetClosestNForPartition(p, n)
		if err != nil {
			// Unreachable: n <= members and 0 <= p < partitions.
			panic(fmt.Sprintf("ring: consistent placement of partition %d: %v", p, err))
		}
		out[p].Owner = ms[0].String()
		if n == 2 {
			out[p].Replica = ms[1].String()
		}
	}
	return out
}

// Moved counts the partitions whose owner, and separately whose replica,
// differ between two placements of the same partition count. If the lengths
// differ, partitions present in only one of them count as moved in both.
func Moved(before, after []Assignment) (owners, replicas int) {
	n := min(len(before), len(after))
	for p := 0; p < n; p++ {
		if before[p].Owner != after[p].Owner {
			owners++
		}
		if before[p].Replica != after[p].Replica {
			replicas++
		}
	}
	extra := max(len(before), len(after)) - n
	return owners + extra, replicas + extra
}

// ringMember is a member of the consistent circle, named by node id.
type ringMember string

func (m ringMember) String() string { return string(m) }

// xxhasher adapts xxhash to consistent.Hasher.
type xxhasher struct{}

func (xxhasher) Sum64(b []byte) uint64 { return xxhash.Sum64(b) }
