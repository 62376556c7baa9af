// Package state keeps the daemon's run state and decides, with pure
// functions, what to do about fires the daemon did not see.
//
// # Run state
//
// Open loads (or creates) the run state of a state.dir: state.db, a bbolt
// database holding for each job when it was first registered (Since) and
// the scheduled time of the newest fire whose outcome was recorded
// (LastDone), the fires whose intent was recorded without an outcome yet
// (in flight), keyed by run id, and the audit log's sequence number and
// hash that the stored state covers. The whole state is also kept in
// memory; reads never touch the disk.
//
// Without a journal every change is durable when its method returns (one
// transaction, costing the entries it changes). The daemon attaches the
// audit log as the journal (Attach): a fire's intent is then durable with
// its run records (Claim: the check, the intent and the records as one
// step), missed and recover records with the settlement of their fire
// (Settle), and outcomes with their final records, written by the
// executor before Done. A background checkpoint writes the changed
// entries and the journal tail they cover; a read-write lock makes every
// checkpoint a consistent cut, so the stored state reflects exactly the
// journal up to its tail (Done aside, which the daemon's recovery reads
// from the audit log). Attach replays the records after the stored tail.
//
// A state file that is damaged or foreign makes Open fail with a
// *FileError that names the file and says how to start fresh; it is never
// reset silently. Open holds an exclusive flock on state.lock in the same
// directory until Close, so two daemons cannot share one state.dir. An old
// state.json (format scheduler-state/v1) is migrated into state.db on
// first start and replaced by a marker that older binaries refuse.
//
// # Catch-up and recovery
//
// Plan computes, without I/O, which missed fires of a job run on start or
// after a forward clock jump and which are reported as missed; ShouldRun
// refuses a fire already done (also when the clock went backwards);
// Recover decides what happens to an intent a crash left without outcome.
// JumpDetector compares wall and monotonic clock readings to notice clock
// jumps.
//
// The intended order on start: Open; open the audit log with AuditTail;
// Attach; for each Pending intent, Recover, then re-issue (Claim with
// Reissue) or Settle with its records; Sync the configured jobs; then Plan
// each job and either Claim its Run with the Missed records, or Settle
// the Missed records at Settle, so the same fires are never reported
// again.
package state
