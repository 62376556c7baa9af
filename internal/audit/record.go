package audit

import (
	"encoding/json"
	"fmt"
	"strconv"
	"time"
)

// Events: the value of Record.Event.
const (
	// EventRun is the intent record the executor writes once per target of a
	// fire, before its first vendor call. Outcome is empty: the outcome follows
	// in EventAttempt (or EventAbandon) records of the same run_id and target.
	// A run record without a final attempt record means the call's outcome is
	// unknown (the daemon crashed or was killed mid-fire).
	EventRun = "run"
	// EventAttempt records one vendor call: outcome success, retry or failure.
	EventAttempt = "attempt"
	// EventAbandon records a target the executor gave up on without a further
	// attempt, e.g. the fire was cancelled during a backoff wait or while
	// waiting for an account concurrency slot; outcome failure.
	EventAbandon = "abandon"
	// EventSkip records a fire not run because of the overlap policy;
	// outcome skipped, detail names the run it yielded to.
	EventSkip = "skip"
	// EventMissed records a fire too old to catch up; outcome missed.
	EventMissed = "missed"
	// EventRecover records the re-evaluation, after a crash, of an intent
	// without outcome; outcome unknown when the call was not re-issued.
	EventRecover = "recover"
	// EventVerify records a status poll after an action; outcome verified,
	// verify_failed or unverified.
	EventVerify = "verify"
	// EventReload records a configuration reload; detail holds the diff.
	EventReload = "reload"
	// EventRepair records a repair of the audit log itself: an incomplete
	// last line cut off on open (detail names its offset, length, sha256
	// and the side file that keeps it), or a new chain segment started by
	// Repair (detail names the old segment's tail and the run state's).
	EventRepair = "repair"
	// EventAuditFailed records, written late once the audit log writes
	// again, a fire whose intent the log refused during an outage (a full
	// disk): outcome failure, no vendor call was made.
	EventAuditFailed = "audit_failed"
)

// Outcomes: the value of Record.Outcome.
const (
	OutcomeSuccess      = "success"
	OutcomeRetry        = "retry" // this attempt failed and another follows
	OutcomeFailure      = "failure"
	OutcomeSkipped      = "skipped" // overlap policy
	OutcomeMissed       = "missed"  // too old to catch up
	OutcomeUnknown      = "unknown" // a crash left a non-idempotent call without outcome
	OutcomeVerified     = "verified"
	OutcomeVerifyFailed = "verify_failed"
	OutcomeUnverified   = "unverified" // the vendor documents no status read
)

// Record is one line of the audit log (design.md "Audit log contract").
//
// Every contract field is always present in the JSON. Zero values are
// written as "" for strings and times and 0 for numbers; the log never
// contains null. Time is written in UTC with nanoseconds (RFC 3339);
// Scheduled keeps the offset of the value it was given (the job's zone).
type Record struct {
	Time       time.Time // when the record was made; Append fills in time.Now() if zero
	Event      string    // one of the Event constants
	Job        string
	RunID      string // job name + scheduled time, the same for every attempt of a fire
	Scheduled  time.Time
	Action     string
	Account    string
	Target     string
	Attempt    int    // from 1; 0 on records that are not about one attempt
	Outcome    string // one of the Outcome constants; "" on EventRun and EventReload
	HTTPStatus int
	VendorCode string
	RequestID  string // the vendor's request id, where it returns one
	Error      string // error text; vendor packages keep secrets out of it
	DurationMS int64
	Detail     string // free text, e.g. "already in target state" or a reload diff; omitted when empty
	// Node names the replica that wrote the record, in a cluster (several
	// hosts sharing run state in etcd; each keeps its own log); omitted
	// when empty, so a single host's records and logs written before the
	// field existed read and verify as they always did.
	Node string

	// The hash chain (see the package doc). Append assigns these and
	// ignores any value the caller set; ReadAll and Records fill them in.
	LogID string // random id of the log, on the record with Seq 1 only
	Seq   uint64 // position in the log, from 1, continuing across rotated files
	Prev  string // Hash of the record before, or the log's genesis hash for Seq 1
	Hash  string // hex SHA-256 of this record's line without its hash field
}

// wire is the JSON shape of a Record. Field order is the order of the
// contract.
type wire struct {
	Time       string `json:"time"`
	Event      string `json:"event"`
	Job        string `json:"job"`
	RunID      string `json:"run_id"`
	Scheduled  string `json:"scheduled"`
	Action     string `json:"action"`
	Account    string `json:"account"`
	Target     string `json:"target"`
	Attempt    int    `json:"attempt"`
	Outcome    string `json:"outcome"`
	HTTPStatus int    `json:"http_status"`
	VendorCode string `json:"vendor_code"`
	RequestID  string `json:"request_id"`
	Error      string `json:"error"`
	DurationMS int64  `json:"duration_ms"`
	Detail     string `json:"detail,omitempty"`
	Node       string `json:"node,omitempty"`
	LogID      string `json:"log_id,omitempty"`
	Seq        uint64 `json:"seq,omitempty"`
	Prev       string `json:"prev,omitempty"`
	Hash       string `json:"hash,omitempty"`
}

func parseTime(field, s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("audit: field %s: %w", field, err)
	}
	return t, nil
}

// MarshalJSON writes every contract field, time in UTC.
func (r Record) MarshalJSON() ([]byte, error) {
	return r.appendJSON(make([]byte, 0, r.sizeHint())), nil
}

// sizeHint is about the length of r's JSON without escapes: the fixed
// part (member names, punctuation, times, numbers) plus the strings.
func (r *Record) sizeHint() int {
	return 300 + len(r.Event) + len(r.Job) + len(r.RunID) + len(r.Action) + len(r.Account) +
		len(r.Target) + len(r.Outcome) + len(r.VendorCode) + len(r.RequestID) + len(r.Error) +
		len(r.Detail) + len(r.Node) + len(r.LogID) + len(r.Prev) + len(r.Hash)
}

// maxSize bounds the length of r's JSON: encoding/json writes at most 6
// bytes (\u00XX, \ufffd) for each byte of a string.
func (r *Record) maxSize() int {
	return 512 + 6*(r.sizeHint()-300)
}

// appendJSON appends r as one JSON object, exactly as encoding/json
// writes the wire struct (member order, omitempty, escaping), without
// reflection: the audit log encodes every record of every fire with it.
func (r *Record) appendJSON(dst []byte) []byte {
	dst = append(dst, `{"time":`...)
	dst = appendTime(dst, r.Time.UTC())
	dst = append(dst, `,"event":`...)
	dst = appendString(dst, r.Event)
	dst = append(dst, `,"job":`...)
	dst = appendString(dst, r.Job)
	dst = append(dst, `,"run_id":`...)
	dst = appendString(dst, r.RunID)
	dst = append(dst, `,"scheduled":`...)
	dst = appendTime(dst, r.Scheduled)
	dst = append(dst, `,"action":`...)
	dst = appendString(dst, r.Action)
	dst = append(dst, `,"account":`...)
	dst = appendString(dst, r.Account)
	dst = append(dst, `,"target":`...)
	dst = appendString(dst, r.Target)
	dst = append(dst, `,"attempt":`...)
	dst = strconv.AppendInt(dst, int64(r.Attempt), 10)
	dst = append(dst, `,"outcome":`...)
	dst = appendString(dst, r.Outcome)
	dst = append(dst, `,"http_status":`...)
	dst = strconv.AppendInt(dst, int64(r.HTTPStatus), 10)
	dst = append(dst, `,"vendor_code":`...)
	dst = appendString(dst, r.VendorCode)
	dst = append(dst, `,"request_id":`...)
	dst = appendString(dst, r.RequestID)
	dst = append(dst, `,"error":`...)
	dst = appendString(dst, r.Error)
	dst = append(dst, `,"duration_ms":`...)
	dst = strconv.AppendInt(dst, r.DurationMS, 10)
	if r.Detail != "" {
		dst = append(dst, `,"detail":`...)
		dst = appendString(dst, r.Detail)
	}
	if r.Node != "" {
		dst = append(dst, `,"node":`...)
		dst = appendString(dst, r.Node)
	}
	if r.LogID != "" {
		dst = append(dst, `,"log_id":`...)
		dst = appendString(dst, r.LogID)
	}
	if r.Seq != 0 {
		dst = append(dst, `,"seq":`...)
		dst = strconv.AppendUint(dst, r.Seq, 10)
	}
	if r.Prev != "" {
		dst = append(dst, `,"prev":`...)
		dst = appendString(dst, r.Prev)
	}
	if r.Hash != "" {
		dst = append(dst, `,"hash":`...)
		dst = appendString(dst, r.Hash)
	}
	return append(dst, '}')
}

// appendTime appends t as a JSON string, RFC 3339 with nanoseconds, or ""
// for the zero time: RFC 3339 text has nothing to escape.
func appendTime(dst []byte, t time.Time) []byte {
	dst = append(dst, '"')
	if !t.IsZero() {
		dst = t.AppendFormat(dst, time.RFC3339Nano)
	}
	return append(dst, '"')
}

// appendString appends s as a JSON string the way encoding/json does.
// Printable ASCII other than the characters it escapes (quote, backslash
// and, for HTML, < > &) is copied as is; any other string is left to
// encoding/json (control characters, non-ASCII text, invalid UTF-8 and
// U+2028/U+2029 have rules of their own).
func appendString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			b, _ := json.Marshal(s) // a string always encodes
			return append(dst, b...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}

// UnmarshalJSON reads a record written by MarshalJSON.
func (r *Record) UnmarshalJSON(b []byte) error {
	var w wire
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	t, err := parseTime("time", w.Time)
	if err != nil {
		return err
	}
	s, err := parseTime("scheduled", w.Scheduled)
	if err != nil {
		return err
	}
	*r = Record{
		Time:       t,
		Event:      w.Event,
		Job:        w.Job,
		RunID:      w.RunID,
		Scheduled:  s,
		Action:     w.Action,
		Account:    w.Account,
		Target:     w.Target,
		Attempt:    w.Attempt,
		Outcome:    w.Outcome,
		HTTPStatus: w.HTTPStatus,
		VendorCode: w.VendorCode,
		RequestID:  w.RequestID,
		Error:      w.Error,
		DurationMS: w.DurationMS,
		Detail:     w.Detail,
		Node:       w.Node,
		LogID:      w.LogID,
		Seq:        w.Seq,
		Prev:       w.Prev,
		Hash:       w.Hash,
	}
	return nil
}
