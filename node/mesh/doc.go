// Package mesh is the mesh backend of a node: it serves the commands of
// this node's clients by sending each to the owner of its partition, and
// it plays the owner's part for the partitions this node owns.
//
// A node plays four roles at once, each in its own file, each knowing
// only the parts below it:
//
//   - The router (route.go) sends a request to the owner of a partition
//     and follows the partition through epoch changes.
//   - The home (home.go, homesessions.go, wait.go) is the node a client is
//     connected to: it implements node.Backend, keeps the sessions
//     attached here alive with their session owners, and carries a
//     waiting lock across failovers.
//   - The lock owner (owner.go) answers homes' requests for the locks of
//     the partitions this node owns, and sweeps for locks of sessions
//     that have ended.
//   - The session owner (sessionowner.go) keeps the records of the
//     sessions whose ids hash to partitions this node owns: attach,
//     resume, renewal, expiry.
//
// The roles talk to each other, here and on other nodes, only through
// peer methods: a Caller calls a method on a node (this one in process),
// and a Table is the partition table as last applied here. Both are small
// interfaces with in-memory implementations for tests, so that every
// role can be tested in one process. Start (mesh.go) builds everything in
// dependency order: the peer listener, the data plane and its partition
// set, gossip, the control plane, then the roles, whose handlers are all
// registered before the peer server starts.
//
// Imports: node (the Backend it implements), node/failure, node/locktable,
// node/partition, node/peer, node/wire (nothing of the text protocol but
// the node's stat lines), replication and ring. Nothing under node/
// imports this package; only cmd/elockd does.
//
// Lock order: every mutex in this package is a leaf. No mutex is held
// while calling a peer method, the partition set or another role. The
// lock owner's mutex is taken under a partition's mutex by the guard of
// an unlock or a drop (owner.go), which calls nothing else.
package mesh
