// Package observe shows what the daemon does: the fan-out of the record
// stream (Hub), the status built from it (Tracker, Status), and the
// optional HTTP listener with /metrics, /livez, /readyz, /api/v1/status
// and the status page.
//
// # One stream of facts
//
// The audit record is the event. internal/audit.Log calls Hub.Publish
// after every durable write (Log.Subscribe); the hub's goroutine hands each
// batch, in log order, to its sinks: the metrics, the tracker behind the
// status page, the notifier. No package counts or notifies at the point of
// action: a new kind of fact is a new audit record, and a new consumer is a
// new Sink. Publish never blocks, so a slow sink never delays a fire; past
// 100 000 waiting batches the oldest are dropped from the view (the audit
// log keeps them).
package observe
