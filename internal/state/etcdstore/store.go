// Package etcdstore keeps the run state of a cluster of scheduler replicas
// in etcd, behind the same state.RunState seam as the embedded store.
//
// Every replica opens a Store on the same prefix. A fire is claimed by one
// transaction that creates its claim key with the claimer's lease (Compare
// CreateRevision == 0) together with its intent, and only after checking,
// in the same transaction, that the job's record is unchanged since it was
// read (so a fire at or before LastDone is never claimed again, also after
// the clock went backwards). Of any number of replicas claiming one fire,
// exactly one succeeds, and only it calls the vendor.
//
// Keys under the prefix P:
//
//	P jobs/<job>        {"since", "last_done", "last_run_id"}: no lease
//	P intents/<run id>  the fire's intent, until its outcome is recorded: no lease
//	P claims/<run id>   the claimer's node name, with the claimer's lease
//	P overrides/<window>\x00<target>  a window's time-boxed override (state.Override)
//	P done/<run id>     the fire's scheduled time, once its outcome is recorded (see SettleUnclaimed, ForgetDone)
//	P outcomes/<run id>\x00<target>  a target's outcome, recorded by the claimer as the target ends,
//	                    until the fire is done (see RecordOutcomes)
//
// The lease belongs to the replica's session (concurrency.Session) and is
// kept alive while the replica runs and reaches etcd. When the replica dies
// or is cut off, the lease expires after its TTL and its claim keys go with
// it; its intents stay. Pending returns those intents, whose claim is gone:
// a survivor Adopts one (a transaction creating the claim key again with
// its own lease, so exactly one survivor recovers it) and then recovers it
// by the delivery rule.
//
// A replica without a live session (etcd unreachable, lease expired) claims
// nothing: Claim and Adopt fail with ErrNoSession until the session is back.
// The Store renews its session on its own.
//
// Records passed to Claim and Settle go to the replica's own journal (its
// audit log): after the claim's transaction succeeded (if the journal then
// fails, the claim is withdrawn), and before Settle's transaction.
//
// A fire's targets end one by one, and each final record goes to the
// claimer's audit log first; RecordOutcomes then puts the target's outcome
// under the prefix, so that a survivor recovering the fire after the
// claimer died knows which targets already have an outcome (Pending lists
// them in Finished) and neither re-issues nor audits them unknown. Only a
// crash between the audit log's write and that put (or a replica cut off
// etcd at that moment) leaves a target whose outcome is in the claimer's
// log alone; the survivor then applies the delivery rule to it.
package etcdstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/cloudcron/scheduler/internal/audit"
	"github.com/cloudcron/scheduler/internal/state"
)

// Defaults of Options.
const (
	DefaultTTL     = 5 * time.Second
	DefaultTimeout = 3 * time.Second
)

// ErrNoSession: the replica has no live lease in etcd (etcd unreachable,
// or the lease expired while it was cut off), so it claims nothing.
var ErrNoSession = errors.New("etcd: no live session; not claiming fires until etcd is reachable again")

// maxTxnOps is the most operations one transaction carries: etcd refuses
// more than 128 by default (--max-txn-ops).
const maxTxnOps = 100

// Options configure Open.
type Options struct {
	// Client is the etcd client; the Store does not close it.
	Client *clientv3.Client
	// Prefix holds every key of the cluster's run state, e.g.
	// "/scheduler/prod/". A "/" is added if missing.
	Prefix string
	// Node names this replica in its claims.
	Node string
	// TTL of the replica's lease: how long after the replica is gone (or
	// cut off) its claims expire and survivors take its fires over.
	// Default DefaultTTL; etcd rounds it up to whole seconds.
	TTL time.Duration
	// Timeout bounds each request to etcd. Default DefaultTimeout.
	Timeout time.Duration
	// Journal receives the records of Claim and Settle.
	Journal state.Journal
	// Log receives session changes.
	Log zerolog.Logger
	// OnSession, if set, is called when the session is lost (false) and
	// when it is back (true).
	OnSession func(up bool)
}

// Store is the run state of a cluster, in etcd. Its methods are safe for
// concurrent use.
type Store struct {
	cli     *clientv3.Client
	prefix  string
	node    string
	ttl     int
	timeout time.Duration
	journal state.Journal
	log     zerolog.Logger
	onSess  func(bool)

	ctx    context.Context // the Store's life: sessions live in it
	cancel context.CancelFunc
	done   chan struct{} // the session keeper ended

	mu     sync.Mutex
	sess   *concurrency.Session // nil while there is none
	closed bool
	cache  map[string]state.JobState // the last read of each job, for Job when etcd is unreachable
	// uncertain are the claims whose transaction got no answer, by run
	// id: the intent they put, which a retry recognises as its own.
	uncertain map[string]string
	wake      chan struct{} // closed and replaced when the session changes
}

type jobValue struct {
	Since     time.Time `json:"since,omitzero"`
	LastDone  time.Time `json:"last_done,omitzero"`
	LastRunID string    `json:"last_run_id,omitempty"`
}

type intentValue struct {
	Job string `json:"job"`
	state.Intent
}

type claimValue struct {
	Node string    `json:"node"`
	At   time.Time `json:"at"`
}

// Open starts a session (a lease of TTL) in etcd and returns the Store. It
// fails if etcd does not answer within Timeout.
func Open(opts Options) (*Store, error) {
	if opts.Client == nil || opts.Journal == nil {
		return nil, errors.New("etcdstore: open: need a client and a journal")
	}
	if opts.Node == "" {
		return nil, errors.New("etcdstore: open: need a node name")
	}
	if opts.TTL <= 0 {
		opts.TTL = DefaultTTL
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	p := opts.Prefix
	if !strings.HasSuffix(p, "/") {
		p += "/"
	}
	s := &Store{
		cli: opts.Client, prefix: p, node: opts.Node, ttl: int((opts.TTL + time.Second - 1) / time.Second),
		timeout: opts.Timeout, journal: opts.Journal, onSess: opts.OnSession,
		log:   opts.Log.With().Str("component", "etcd").Logger(),
		cache: map[string]state.JobState{}, uncertain: map[string]string{}, wake: make(chan struct{}), done: make(chan struct{}),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	sess, err := s.newSession()
	if err != nil {
		s.cancel()
		return nil, fmt.Errorf("etcdstore: open a session under %s: %w", p, err)
	}
	s.sess = sess
	go s.keep(sess)
	return s, nil
}

// newSession grants a lease (bounded by Timeout) and keeps it alive for
// the Store's life.
func (s *Store) newSession() (*concurrency.Session, error) {
	ctx, cancel := context.WithTimeout(s.ctx, s.timeout)
	lease, err := s.cli.Grant(ctx, int64(s.ttl))
	cancel()
	if err != nil {
		return nil, err
	}
	return concurrency.NewSession(s.cli, concurrency.WithLease(lease.ID), concurrency.WithTTL(s.ttl), concurrency.WithContext(s.ctx))
}

// keep renews the session whenever it ends, until Close.
func (s *Store) keep(sess *concurrency.Session) {
	defer close(s.done)
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-sess.Done():
		}
		s.mu.Lock()
		closed := s.closed
		s.mu.Unlock()
		if closed || s.ctx.Err() != nil {
			return // Close ended the session
		}
		s.setSession(nil)
		s.log.Error().Str("node", s.node).Msg("lost the etcd session (etcd unreachable or the lease expired): not claiming fires; other replicas take over this replica's fires")
		retry := 200 * time.Millisecond
		for {
			var err error
			if sess, err = s.newSession(); err == nil {
				break
			}
			s.log.Debug().Err(err).Msg("etcd session not renewed yet")
			t := time.NewTimer(retry)
			select {
			case <-s.ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			retry = min(2*retry, 2*time.Second)
		}
		s.mu.Lock()
		closed = s.closed
		s.mu.Unlock()
		if closed {
			_ = sess.Close()
			return
		}
		s.setSession(sess)
		s.log.Warn().Str("node", s.node).Msg("etcd session back: claiming fires again")
	}
}

func (s *Store) setSession(sess *concurrency.Session) {
	s.mu.Lock()
	s.sess = sess
	close(s.wake)
	s.wake = make(chan struct{})
	s.mu.Unlock()
	if s.onSess != nil {
		s.onSess(sess != nil)
	}
}

// Live reports whether the replica holds a live session: whether it
// claims fires.
func (s *Store) Live() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sess != nil && !s.closed
}

// Changed returns a channel closed at the next session change.
func (s *Store) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.wake
}

// Session returns the live session, for an election among the replicas;
// ErrNoSession if there is none.
func (s *Store) Session() (*concurrency.Session, error) { return s.check() }

// Prefix returns the key prefix, ending in "/".
func (s *Store) Prefix() string { return s.prefix }

// Node returns this replica's name.
func (s *Store) Node() string { return s.node }

func (s *Store) jobKey(job string) string      { return s.prefix + "jobs/" + job }
func (s *Store) intentKey(runID string) string { return s.prefix + "intents/" + runID }
func (s *Store) claimKey(runID string) string  { return s.prefix + "claims/" + runID }
func (s *Store) doneKey(runID string) string   { return s.prefix + "done/" + runID }
func (s *Store) outcomesKey(runID string) string {
	return s.prefix + "outcomes/" + runID + "\x00"
}

func (s *Store) opCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(s.ctx, s.timeout)
}

// check returns the live session, or why there is none.
func (s *Store) check() (*concurrency.Session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, state.ErrClosed
	}
	if s.sess == nil {
		return nil, ErrNoSession
	}
	return s.sess, nil
}

func (s *Store) checkOpen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return state.ErrClosed
	}
	return nil
}

func decodeJob(b []byte) (jobValue, error) {
	var v jobValue
	if len(b) == 0 {
		return v, nil
	}
	err := json.Unmarshal(b, &v)
	return v, err
}

// Job returns the state of job as etcd holds it; when etcd does not
// answer, the last state read (the Store claims nothing meanwhile, so the
// daemon's decisions on it are only about what to log).
func (s *Store) Job(name string) state.JobState {
	st, err := s.readJob(name)
	if err != nil {
		s.log.Debug().Err(err).Str("job", name).Msg("etcd read failed; answering from the last read")
		s.mu.Lock()
		defer s.mu.Unlock()
		c := s.cache[name]
		c.InFlight = slices.Clone(c.InFlight)
		return c
	}
	s.mu.Lock()
	s.cache[name] = st
	s.mu.Unlock()
	st.InFlight = slices.Clone(st.InFlight)
	return st
}

func (s *Store) readJob(name string) (state.JobState, error) {
	ctx, cancel := s.opCtx()
	defer cancel()
	resp, err := s.cli.Txn(ctx).Then(
		clientv3.OpGet(s.jobKey(name)),
		clientv3.OpGet(s.intentKey(name+"@"), clientv3.WithPrefix()),
	).Commit()
	if err != nil {
		return state.JobState{}, err
	}
	var st state.JobState
	if kvs := resp.Responses[0].GetResponseRange().Kvs; len(kvs) > 0 {
		v, err := decodeJob(kvs[0].Value)
		if err != nil {
			return st, fmt.Errorf("etcdstore: %s: %w", kvs[0].Key, err)
		}
		st.Since, st.LastDone, st.LastRunID = v.Since, v.LastDone, v.LastRunID
	}
	for _, kv := range resp.Responses[1].GetResponseRange().Kvs {
		var in intentValue
		if err := json.Unmarshal(kv.Value, &in); err != nil {
			return st, fmt.Errorf("etcdstore: %s: %w", kv.Key, err)
		}
		if in.Job == name {
			st.InFlight = append(st.InFlight, in.Intent)
		}
	}
	sortIntents(st.InFlight)
	return st, nil
}

// JobStates returns the state of every job with a record or an intent
// under the prefix, in one read (one transaction of two range reads,
// however many jobs there are): what catch-up plans from. The last state
// read of each job (Job's answer while etcd is away) is updated too.
func (s *Store) JobStates() (map[string]state.JobState, error) {
	ctx, cancel := s.opCtx()
	defer cancel()
	resp, err := s.cli.Txn(ctx).Then(
		clientv3.OpGet(s.prefix+"jobs/", clientv3.WithPrefix()),
		clientv3.OpGet(s.prefix+"intents/", clientv3.WithPrefix()),
	).Commit()
	if err != nil {
		return nil, fmt.Errorf("etcdstore: read the jobs' state: %w", err)
	}
	out := map[string]state.JobState{}
	for _, kv := range resp.Responses[0].GetResponseRange().Kvs {
		v, err := decodeJob(kv.Value)
		if err != nil {
			return nil, fmt.Errorf("etcdstore: %s: %w", kv.Key, err)
		}
		name := strings.TrimPrefix(string(kv.Key), s.prefix+"jobs/")
		out[name] = state.JobState{Since: v.Since, LastDone: v.LastDone, LastRunID: v.LastRunID}
	}
	for _, kv := range resp.Responses[1].GetResponseRange().Kvs {
		var in intentValue
		if err := json.Unmarshal(kv.Value, &in); err != nil {
			return nil, fmt.Errorf("etcdstore: %s: %w", kv.Key, err)
		}
		st := out[in.Job]
		st.InFlight = append(st.InFlight, in.Intent)
		out[in.Job] = st
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, st := range out {
		sortIntents(st.InFlight)
		s.cache[name] = st
		c := st
		c.InFlight = slices.Clone(st.InFlight)
		out[name] = c
	}
	return out, nil
}

func sortIntents(ins []state.Intent) {
	slices.SortFunc(ins, func(a, b state.Intent) int {
		if c := a.Scheduled.Compare(b.Scheduled); c != 0 {
			return c
		}
		return strings.Compare(a.RunID, b.RunID)
	})
}

// Jobs returns the names of the jobs with state, sorted; nil if etcd does
// not answer.
func (s *Store) Jobs() []string {
	ctx, cancel := s.opCtx()
	defer cancel()
	resp, err := s.cli.Txn(ctx).Then(
		clientv3.OpGet(s.prefix+"jobs/", clientv3.WithPrefix(), clientv3.WithKeysOnly()),
		clientv3.OpGet(s.prefix+"intents/", clientv3.WithPrefix()),
	).Commit()
	if err != nil {
		s.log.Warn().Err(err).Msg("etcd read of the job list failed")
		return nil
	}
	seen := map[string]bool{}
	for _, kv := range resp.Responses[0].GetResponseRange().Kvs {
		seen[strings.TrimPrefix(string(kv.Key), s.prefix+"jobs/")] = true
	}
	for _, kv := range resp.Responses[1].GetResponseRange().Kvs {
		var in intentValue
		if json.Unmarshal(kv.Value, &in) == nil && in.Job != "" {
			seen[in.Job] = true
		}
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Sync registers and forgets jobs (see state.RunState), in transactions of
// at most maxTxnOps jobs each, every one checked against the records it
// read.
func (s *Store) Sync(forget, register []string, now time.Time) error {
	if now.IsZero() && len(register) > 0 {
		return errors.New("etcdstore: sync: zero registration time")
	}
	if err := s.checkOpen(); err != nil {
		return err
	}
	var all []change
	for _, j := range register {
		if j != "" {
			all = append(all, change{job: j})
		}
	}
	for _, j := range forget {
		all = append(all, change{job: j, forget: true})
	}
	for len(all) > 0 {
		n := min(len(all), maxTxnOps/2)
		chunk := all[:n]
		for attempt := 0; ; attempt++ {
			ok, err := s.syncChunk(chunk, now)
			if err != nil {
				return fmt.Errorf("etcdstore: sync jobs: %w", err)
			}
			if ok {
				break
			}
			if attempt == 20 {
				return errors.New("etcdstore: sync jobs: the job records kept changing under the transaction")
			}
		}
		all = all[n:]
	}
	return nil
}

// change is one job of Sync.
type change struct {
	job    string
	forget bool
}

func (s *Store) syncChunk(chunk []change, now time.Time) (bool, error) {
	ctx, cancel := s.opCtx()
	defer cancel()
	gets := make([]clientv3.Op, len(chunk))
	for i, c := range chunk {
		gets[i] = clientv3.OpGet(s.jobKey(c.job))
	}
	resp, err := s.cli.Txn(ctx).Then(gets...).Commit()
	if err != nil {
		return false, err
	}
	var cmps []clientv3.Cmp
	var ops []clientv3.Op
	for i, c := range chunk {
		key := s.jobKey(c.job)
		var rev int64
		var v jobValue
		if kvs := resp.Responses[i].GetResponseRange().Kvs; len(kvs) > 0 {
			rev = kvs[0].ModRevision
			if v, err = decodeJob(kvs[0].Value); err != nil {
				return false, fmt.Errorf("%s: %w", key, err)
			}
		}
		switch {
		case c.forget && rev != 0:
			ops = append(ops, clientv3.OpDelete(key))
		case !c.forget && v.Since.IsZero():
			v.Since = now
			b, _ := json.Marshal(v)
			ops = append(ops, clientv3.OpPut(key, string(b)))
		default:
			continue
		}
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(key), "=", rev))
	}
	if len(ops) == 0 {
		return true, nil
	}
	tr, err := s.cli.Txn(ctx).If(cmps...).Then(ops...).Commit()
	if err != nil {
		return false, err
	}
	return tr.Succeeded, nil
}

// Claim claims a fire for this replica (see state.RunState): one
// transaction puts the intent and creates the claim key with this
// replica's lease, if the job's record, the intent and the claim are as
// read just before. c.Records are then written to the journal; if that
// fails the claim is withdrawn.
func (s *Store) Claim(c state.Claim) (bool, error) {
	in := c.Intent
	if c.Job == "" || in.RunID == "" || in.Scheduled.IsZero() {
		return false, fmt.Errorf("etcdstore: claim %q: need a job name, run id and scheduled time", in.RunID)
	}
	in.Targets = slices.Clone(in.Targets)
	sess, err := s.check()
	if err != nil {
		return false, err
	}
	jk, ik, ck := s.jobKey(c.Job), s.intentKey(in.RunID), s.claimKey(in.RunID)
	iv, _ := json.Marshal(intentValue{Job: c.Job, Intent: in})
	cv, _ := json.Marshal(claimValue{Node: s.node, At: in.Started})
	for attempt := 0; ; attempt++ {
		ctx, cancel := s.opCtx()
		resp, err := s.cli.Txn(ctx).Then(clientv3.OpGet(jk), clientv3.OpGet(ik), clientv3.OpGet(ck)).Commit()
		if err != nil {
			cancel()
			return false, fmt.Errorf("etcdstore: claim %s: %w", in.RunID, err)
		}
		job, jrev, err := s.jobFrom(resp.Responses[0].GetResponseRange())
		if err != nil {
			cancel()
			return false, err
		}
		if !in.Scheduled.After(job.LastDone) {
			cancel()
			return false, nil
		}
		irev := modRev(resp.Responses[1].GetResponseRange())
		claim := resp.Responses[2].GetResponseRange()
		crev := modRev(claim)
		mine := crev != 0 && clientv3.LeaseID(claim.Kvs[0].Lease) == sess.Lease()
		if mine && irev != 0 && string(resp.Responses[1].GetResponseRange().Kvs[0].Value) == string(iv) && s.wasUncertain(in.RunID, iv) {
			// An earlier attempt of this very claim failed to answer but
			// was committed: it is ours.
			cancel()
			if err := s.journal.AppendBatch(c.Records); err != nil {
				s.withdraw(c.Job, in.RunID, crev, resp)
				return false, err
			}
			return true, nil
		}
		if irev != 0 && !c.Reissue || crev != 0 && !(c.Reissue && mine) {
			cancel() // in flight, or claimed by another replica
			return false, nil
		}
		cmps := []clientv3.Cmp{
			clientv3.Compare(clientv3.ModRevision(jk), "=", jrev),
			clientv3.Compare(clientv3.ModRevision(ik), "=", irev),
		}
		if crev == 0 {
			cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(ck), "=", 0))
		} else {
			cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(ck), "=", crev))
		}
		ops := []clientv3.Op{clientv3.OpPut(ik, string(iv)), clientv3.OpPut(ck, string(cv), clientv3.WithLease(sess.Lease()))}
		if c.Settled.After(job.LastDone) {
			job.LastDone, job.LastRunID = c.Settled, ""
			b, _ := json.Marshal(job)
			ops = append(ops, clientv3.OpPut(jk, string(b)))
		}
		tr, err := s.cli.Txn(ctx).If(cmps...).Then(ops...).Commit()
		cancel()
		if err != nil {
			// It may have been committed all the same: a retry of this
			// claim finds out (wasUncertain).
			s.mu.Lock()
			s.uncertain[in.RunID] = string(iv)
			s.mu.Unlock()
			return false, fmt.Errorf("etcdstore: claim %s: %w", in.RunID, err)
		}
		s.wasUncertain(in.RunID, nil)
		if !tr.Succeeded {
			if attempt == 20 {
				return false, fmt.Errorf("etcdstore: claim %s: the job's records kept changing under the transaction", in.RunID)
			}
			continue // something changed between the read and the claim: read again
		}
		if err := s.journal.AppendBatch(c.Records); err != nil {
			s.withdraw(c.Job, in.RunID, tr.Header.Revision, resp)
			return false, err
		}
		return true, nil
	}
}

// withdraw undoes a claim whose records could not be journaled: the claim
// key, and the intent put with it, are put back as they were read, if
// nothing touched them since.
func (s *Store) withdraw(job, runID string, rev int64, read *clientv3.TxnResponse) {
	ik, ck := s.intentKey(runID), s.claimKey(runID)
	ops := []clientv3.Op{clientv3.OpDelete(ck)}
	if kvs := read.Responses[1].GetResponseRange().Kvs; len(kvs) > 0 {
		ops = append(ops, clientv3.OpPut(ik, string(kvs[0].Value)))
	} else {
		ops = append(ops, clientv3.OpDelete(ik))
	}
	if kvs := read.Responses[2].GetResponseRange().Kvs; len(kvs) > 0 {
		ops[0] = clientv3.OpPut(ck, string(kvs[0].Value), clientv3.WithLease(clientv3.LeaseID(kvs[0].Lease)))
	}
	ctx, cancel := s.opCtx()
	defer cancel()
	_, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(ck), "=", rev)).Then(ops...).Commit()
	if err != nil {
		s.log.Error().Err(err).Str("job", job).Str("run_id", runID).
			Msg("cannot withdraw a claim whose records the audit log refused; the fire is recovered when this replica's lease expires")
	}
}

func modRev(r *pb.RangeResponse) int64 {
	if r == nil || len(r.Kvs) == 0 {
		return 0
	}
	return r.Kvs[0].ModRevision
}

// jobFrom decodes a read job record and its revision (0: absent).
func (s *Store) jobFrom(r *pb.RangeResponse) (jobValue, int64, error) {
	if r == nil || len(r.Kvs) == 0 {
		return jobValue{}, 0, nil
	}
	v, err := decodeJob(r.Kvs[0].Value)
	if err != nil {
		return v, 0, fmt.Errorf("etcdstore: %s: %w", r.Kvs[0].Key, err)
	}
	return v, r.Kvs[0].ModRevision, nil
}

// Settle writes records to the journal and then, with a non-zero
// scheduled, marks the fire done as Done does. A crash between the two
// leaves the fire's intent for recovery (its claim expires with the
// lease), which audits it once more rather than never.
func (s *Store) Settle(job string, scheduled time.Time, runID string, records []audit.Record) error {
	if err := s.checkOpen(); err != nil {
		return err
	}
	if err := s.journal.AppendBatch(records); err != nil {
		return err
	}
	if job == "" || scheduled.IsZero() {
		return nil
	}
	return s.Done(job, scheduled, runID)
}

// Done marks the fire of job at scheduled done (see state.RunState): in
// one transaction LastDone becomes the later of LastDone and scheduled,
// and the fire's intent, claim and recorded outcomes are deleted.
func (s *Store) Done(job string, scheduled time.Time, runID string) error {
	if job == "" || scheduled.IsZero() {
		return fmt.Errorf("etcdstore: done %q: need a job name and scheduled time", runID)
	}
	if err := s.checkOpen(); err != nil {
		return err
	}
	jk := s.jobKey(job)
	for attempt := 0; ; attempt++ {
		ctx, cancel := s.opCtx()
		resp, err := s.cli.Get(ctx, jk)
		if err != nil {
			cancel()
			return fmt.Errorf("etcdstore: done %s: %w", runID, err)
		}
		var r *pb.RangeResponse = (*pb.RangeResponse)(resp)
		v, rev, err := s.jobFrom(r)
		if err != nil {
			cancel()
			return err
		}
		ops := []clientv3.Op{clientv3.OpDelete(s.intentKey(runID)), clientv3.OpDelete(s.claimKey(runID)),
			clientv3.OpDelete(s.outcomesKey(runID), clientv3.WithPrefix()),
			clientv3.OpPut(s.doneKey(runID), scheduled.UTC().Format(time.RFC3339Nano))}
		if !scheduled.Before(v.LastDone) {
			v.LastDone, v.LastRunID = scheduled, runID
			b, _ := json.Marshal(v)
			ops = append(ops, clientv3.OpPut(jk, string(b)))
		}
		tr, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(jk), "=", rev)).Then(ops...).Commit()
		cancel()
		if err != nil {
			return fmt.Errorf("etcdstore: done %s: %w", runID, err)
		}
		if tr.Succeeded {
			return nil
		}
		if attempt == 20 {
			return fmt.Errorf("etcdstore: done %s: the job's record kept changing under the transaction", runID)
		}
	}
}

// Pending returns the intents whose claim key is gone (the claimer's
// lease expired: it died, or was cut off from etcd), oldest first; nil if
// etcd does not answer.
func (s *Store) Pending() []state.PendingIntent {
	ctx, cancel := s.opCtx()
	defer cancel()
	resp, err := s.cli.Txn(ctx).Then(
		clientv3.OpGet(s.prefix+"intents/", clientv3.WithPrefix()),
		clientv3.OpGet(s.prefix+"claims/", clientv3.WithPrefix(), clientv3.WithKeysOnly()),
		clientv3.OpGet(s.prefix+"outcomes/", clientv3.WithPrefix(), clientv3.WithKeysOnly()),
	).Commit()
	if err != nil {
		s.log.Warn().Err(err).Msg("etcd read of the intents failed")
		return nil
	}
	claimed := map[string]bool{}
	for _, kv := range resp.Responses[1].GetResponseRange().Kvs {
		claimed[strings.TrimPrefix(string(kv.Key), s.prefix+"claims/")] = true
	}
	finished := map[string][]string{}
	for _, kv := range resp.Responses[2].GetResponseRange().Kvs {
		id, target, ok := strings.Cut(strings.TrimPrefix(string(kv.Key), s.prefix+"outcomes/"), "\x00")
		if ok && !claimed[id] {
			finished[id] = append(finished[id], target)
		}
	}
	var out []state.PendingIntent
	for _, kv := range resp.Responses[0].GetResponseRange().Kvs {
		id := strings.TrimPrefix(string(kv.Key), s.prefix+"intents/")
		if claimed[id] {
			continue
		}
		var in intentValue
		if err := json.Unmarshal(kv.Value, &in); err != nil || in.Job == "" || in.RunID != id {
			s.log.Error().Str("key", string(kv.Key)).Msg("unreadable intent in etcd; leaving it alone")
			continue
		}
		var done []string
		for _, t := range finished[id] {
			if slices.Contains(in.Targets, t) {
				done = append(done, t)
			}
		}
		out = append(out, state.PendingIntent{Job: in.Job, Intent: in.Intent, Finished: done})
	}
	slices.SortFunc(out, func(a, b state.PendingIntent) int {
		if c := a.Scheduled.Compare(b.Scheduled); c != 0 {
			return c
		}
		return strings.Compare(a.RunID, b.RunID)
	})
	return out
}

// outcomeValue is a target's recorded outcome (key P outcomes/...).
type outcomeValue struct {
	Node    string    `json:"node"`
	Event   string    `json:"event"`
	Outcome string    `json:"outcome"`
	Time    time.Time `json:"time"`
}

// Final reports whether r ends its target's part in a fire the claimer
// runs: an attempt with an outcome other than retry, or an abandon. (Skip,
// recover and missed records are written without a claim of their own or
// settle the fire at once.)
func Final(r audit.Record) bool {
	if r.RunID == "" || r.Target == "" {
		return false
	}
	switch r.Event {
	case audit.EventAttempt:
		return r.Outcome != "" && r.Outcome != audit.OutcomeRetry
	case audit.EventAbandon:
		return true
	}
	return false
}

// RecordOutcomes puts the outcome of each record that is Final under the
// prefix, where a survivor recovering the fire finds it (Pending's
// Finished): the claimer calls it right after the records reached its
// audit log. An outcome is only put while the fire's intent is there (a
// fire already done needs none). Without a live session it does nothing
// and says so: a replica cut off etcd is being taken over, and its
// outcomes cannot reach etcd anyway.
func (s *Store) RecordOutcomes(recs []audit.Record) error {
	if _, err := s.check(); err != nil {
		return err
	}
	var order []string
	puts := map[string][]clientv3.Op{} // by run id
	for _, r := range recs {
		if !Final(r) {
			continue
		}
		if puts[r.RunID] == nil {
			order = append(order, r.RunID)
		}
		v, _ := json.Marshal(outcomeValue{Node: s.node, Event: r.Event, Outcome: r.Outcome, Time: r.Time})
		puts[r.RunID] = append(puts[r.RunID], clientv3.OpPut(s.outcomesKey(r.RunID)+r.Target, string(v)))
	}
	for _, id := range order {
		for ops := puts[id]; len(ops) > 0; {
			n := min(len(ops), maxTxnOps)
			ctx, cancel := s.opCtx()
			_, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(s.intentKey(id)), ">", 0)).Then(ops[:n]...).Commit()
			cancel()
			if err != nil {
				return fmt.Errorf("etcdstore: record the outcomes of %s: %w", id, err)
			}
			ops = ops[n:]
		}
	}
	return nil
}

// Members returns the replicas holding a live session, in the order they
// joined the election under P leader/ (every replica with a session
// campaigns there, its key bound to its lease): the first one leads. It
// answers for the cluster view of `scheduler status`.
func (s *Store) Members() ([]string, error) {
	ctx, cancel := s.opCtx()
	defer cancel()
	resp, err := s.cli.Get(ctx, s.prefix+"leader/", clientv3.WithPrefix(),
		clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend))
	if err != nil {
		return nil, fmt.Errorf("etcdstore: read the replicas: %w", err)
	}
	names := make([]string, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		names = append(names, string(kv.Value))
	}
	return names, nil
}

// Adopt takes p over for this replica: one transaction creates p's claim
// key with this replica's lease if there is none and the intent is still
// there, so of several survivors exactly one recovers it.
func (s *Store) Adopt(p state.PendingIntent) (bool, error) {
	sess, err := s.check()
	if err != nil {
		return false, err
	}
	ik, ck := s.intentKey(p.RunID), s.claimKey(p.RunID)
	cv, _ := json.Marshal(claimValue{Node: s.node, At: time.Now().UTC()})
	ctx, cancel := s.opCtx()
	defer cancel()
	tr, err := s.cli.Txn(ctx).If(
		clientv3.Compare(clientv3.CreateRevision(ck), "=", 0),
		clientv3.Compare(clientv3.CreateRevision(ik), ">", 0),
	).Then(clientv3.OpPut(ck, string(cv), clientv3.WithLease(sess.Lease()))).Commit()
	if err != nil {
		return false, fmt.Errorf("etcdstore: adopt %s: %w", p.RunID, err)
	}
	return tr.Succeeded, nil
}

// Close ends the session and revokes its lease: the claims this replica
// still holds are released at once, and their intents become Pending for
// the other replicas.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	sess := s.sess
	s.mu.Unlock()
	var err error
	if sess != nil {
		err = sess.Close()
	}
	s.cancel()
	<-s.done
	if err != nil {
		return fmt.Errorf("etcdstore: close the session: %w", err)
	}
	return nil
}

// SettleUnclaimed accounts for a fire that no replica could claim before
// the job's next fire (etcd did not answer): if the fire has neither an
// outcome nor an intent in etcd, one transaction marks it done and this
// replica writes records (missed) to its journal; true then. Of several
// replicas that gave the same fire up, one writes the records; none does
// if a replica ran it.
func (s *Store) SettleUnclaimed(runID string, scheduled time.Time, records []audit.Record) (bool, error) {
	if err := s.checkOpen(); err != nil {
		return false, err
	}
	ik, dk := s.intentKey(runID), s.doneKey(runID)
	ctx, cancel := s.opCtx()
	defer cancel()
	tr, err := s.cli.Txn(ctx).If(
		clientv3.Compare(clientv3.CreateRevision(dk), "=", 0),
		clientv3.Compare(clientv3.CreateRevision(ik), "=", 0),
	).Then(clientv3.OpPut(dk, scheduled.UTC().Format(time.RFC3339Nano))).Commit()
	if err != nil {
		return false, fmt.Errorf("etcdstore: settle unclaimed %s: %w", runID, err)
	}
	if !tr.Succeeded {
		return s.settleUncertain(runID, scheduled, records)
	}
	return true, s.journal.AppendBatch(records)
}

// settleUncertain settles, as SettleUnclaimed does, a fire whose claim by
// this replica got no answer (etcd restarting) and yet was committed: its
// intent is there, claimed with this replica's lease, and no vendor was
// called because the claim failed as far as the daemon knows. Left alone,
// nobody would ever settle it: the claim is alive, so the fire is not
// Pending for the others, and catch-up leaves fires with an intent to
// recovery.
func (s *Store) settleUncertain(runID string, scheduled time.Time, records []audit.Record) (bool, error) {
	s.mu.Lock()
	iv, ok := s.uncertain[runID]
	s.mu.Unlock()
	if !ok {
		return false, nil
	}
	sess, err := s.check()
	if err != nil {
		return false, err
	}
	ik, ck, dk := s.intentKey(runID), s.claimKey(runID), s.doneKey(runID)
	ctx, cancel := s.opCtx()
	defer cancel()
	resp, err := s.cli.Txn(ctx).Then(clientv3.OpGet(ik), clientv3.OpGet(ck)).Commit()
	if err != nil {
		return false, fmt.Errorf("etcdstore: settle unclaimed %s: %w", runID, err)
	}
	in, claim := resp.Responses[0].GetResponseRange(), resp.Responses[1].GetResponseRange()
	if len(in.Kvs) == 0 || string(in.Kvs[0].Value) != iv || len(claim.Kvs) == 0 ||
		clientv3.LeaseID(claim.Kvs[0].Lease) != sess.Lease() {
		return false, nil // not this replica's claim
	}
	tr, err := s.cli.Txn(ctx).If(
		clientv3.Compare(clientv3.ModRevision(ik), "=", in.Kvs[0].ModRevision),
		clientv3.Compare(clientv3.ModRevision(ck), "=", claim.Kvs[0].ModRevision),
		clientv3.Compare(clientv3.CreateRevision(dk), "=", 0),
	).Then(clientv3.OpDelete(ik), clientv3.OpDelete(ck), clientv3.OpDelete(s.outcomesKey(runID), clientv3.WithPrefix()),
		clientv3.OpPut(dk, scheduled.UTC().Format(time.RFC3339Nano))).Commit()
	if err != nil {
		return false, fmt.Errorf("etcdstore: settle unclaimed %s: %w", runID, err)
	}
	if !tr.Succeeded {
		return false, nil
	}
	s.wasUncertain(runID, nil)
	return true, s.journal.AppendBatch(records)
}

// ForgetDone deletes the done markers of fires scheduled before before;
// the leader calls it now and then so they do not pile up.
func (s *Store) ForgetDone(before time.Time) (int, error) {
	ctx, cancel := context.WithTimeout(s.ctx, 4*s.timeout)
	defer cancel()
	resp, err := s.cli.Get(ctx, s.prefix+"done/", clientv3.WithPrefix())
	if err != nil {
		return 0, err
	}
	n := 0
	var ops []clientv3.Op
	flush := func() error {
		if len(ops) == 0 {
			return nil
		}
		_, err := s.cli.Txn(ctx).Then(ops...).Commit()
		ops = ops[:0]
		return err
	}
	for _, kv := range resp.Kvs {
		t, err := time.Parse(time.RFC3339Nano, string(kv.Value))
		if err != nil || t.Before(before) {
			ops = append(ops, clientv3.OpDelete(string(kv.Key)))
			n++
			if len(ops) == maxTxnOps {
				if err := flush(); err != nil {
					return n, err
				}
			}
		}
	}
	return n, flush()
}

// wasUncertain reports whether the last attempt of the claim of runID got
// no answer from etcd after putting intent iv, and forgets it.
func (s *Store) wasUncertain(runID string, iv []byte) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.uncertain[runID]
	delete(s.uncertain, runID)
	return ok && v == string(iv)
}

func (s *Store) overrideKey(window, target string) string {
	return s.prefix + "overrides/" + window + "\x00" + target
}

// Overrides returns the windows' overrides, ended ones included, sorted by
// window and target.
func (s *Store) Overrides() ([]state.Override, error) {
	ctx, cancel := s.opCtx()
	defer cancel()
	resp, err := s.cli.Get(ctx, s.prefix+"overrides/", clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("etcdstore: read overrides: %w", err)
	}
	var out []state.Override
	for _, kv := range resp.Kvs {
		var o state.Override
		if err := json.Unmarshal(kv.Value, &o); err != nil {
			return nil, fmt.Errorf("etcdstore: override %q: %w", kv.Key, err)
		}
		out = append(out, o)
	}
	sort.Slice(out, func(a, b int) bool {
		if out[a].Window != out[b].Window {
			return out[a].Window < out[b].Window
		}
		return out[a].Target < out[b].Target
	})
	return out, nil
}

// SetOverride stores o, replacing an override of the same window and
// target.
func (s *Store) SetOverride(o state.Override) error {
	if err := s.checkOpen(); err != nil {
		return err
	}
	v, _ := json.Marshal(o)
	ctx, cancel := s.opCtx()
	defer cancel()
	if _, err := s.cli.Put(ctx, s.overrideKey(o.Window, o.Target), string(v)); err != nil {
		return fmt.Errorf("etcdstore: store override: %w", err)
	}
	return nil
}

// ClearOverride removes the override of window and target and reports
// whether there was one.
func (s *Store) ClearOverride(window, target string) (bool, error) {
	if err := s.checkOpen(); err != nil {
		return false, err
	}
	ctx, cancel := s.opCtx()
	defer cancel()
	resp, err := s.cli.Delete(ctx, s.overrideKey(window, target))
	if err != nil {
		return false, fmt.Errorf("etcdstore: clear override: %w", err)
	}
	return resp.Deleted > 0, nil
}
