package metadata

// The steps of a snapshot Prepare, View and Commit, which span this file
// and the snapshotter's own store, and of a container's create and delete
// with its snapshot. Tests inject a failure or a crash at each one
// (DB.failpoint); production code never sets it.
const (
	// failCreateRecord: the snapshotter made the new snapshot; before its
	// record is written, in the same transaction.
	failCreateRecord = "create/record"
	// failCommitIntent: before the transaction that records the commit
	// under way on the active snapshot's record.
	failCommitIntent = "commit/intent"
	// failCommitBackend: the intent is durable; before the snapshotter
	// commits underneath.
	failCommitBackend = "commit/backend"
	// failCommitRecord: the snapshotter committed; before the transaction
	// that turns the active record into the committed one.
	failCommitRecord = "commit/record"
	// failDeleteContainerRecord: a container's delete with its snapshot
	// removed the snapshot's record; before it deletes the container's,
	// in the same transaction.
	failDeleteContainerRecord = "container-delete/record"
	// failCreateContainerRecord: a container's create with its snapshot
	// made the snapshot and wrote its record; before it writes the
	// container's, in the same transaction.
	failCreateContainerRecord = "container-create/record"
)

// failAt returns the error injected at step, nil when none.
func (db *DB) failAt(step string) error {
	if db.failpoint == nil {
		return nil
	}
	return db.failpoint(step)
}
