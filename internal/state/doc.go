// Package state keeps the daemon's run state and decides, with pure
// functions, what to do about fires the daemon did not see.
//
// # Run state
//
// Open loads (or creates) the run state of a state.dir: one file,
// state.json, holding for each job when it was first registered (Since),
// the scheduled time of the newest fire whose outcome was recorded
// (LastDone) and the fires whose intent was recorded without an outcome
// yet (in flight), plus the audit log's last sequence number and hash.
//
// Every change (Register, Begin, Done, Forget, SetAuditTail) is durable
// when the method returns: the whole file is written to a temporary file
// in the same directory, fsynced, renamed over state.json, and the
// directory is fsynced. A kill -9 at any instant therefore leaves either
// the old or the new complete file; a temporary file left by a crash is
// removed by the next Open (Leftovers names it). A method that returns an
// error leaves the Store's view unchanged.
//
// A state file that is damaged (not JSON, checksum mismatch, bad content)
// or foreign (no or another format marker) makes Open fail with a
// *FileError that names the file and says how to start fresh; it is never
// reset silently. Open holds an exclusive flock on state.lock in the same
// directory until Close, so two daemons cannot share one state.dir.
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
// The intended order on start: Open; for each Pending intent, Recover,
// audit, re-issue or not, then Done; Register every configured job and
// Forget the others; then Plan each job, audit its Missed fires, run Run
// (Begin, fire, Done) or, when nothing runs, call Done with Settle so the
// same fires are not reported again.
package state
