// Package notify sends notifications about the record stream to Slack
// (incoming webhook, blocks with a text fallback), Microsoft Teams
// (Workflows webhook, Adaptive Card) and generic webhooks (CloudEvents 1.0
// structured JSON, signed with HMAC-SHA256 in X-Scheduler-Signature).
//
// The Notifier is an observe.Sink: it picks the records a sink's `on` and
// `jobs` ask for and queues them; it never blocks the record stream and so
// never delays a fire. Each sink has its own queue (256 notifications;
// past that they are counted as suppressed) and goroutine, which sends
// with retries (cenkalti/backoff/v4: network errors, 5xx and 429 are
// retried, other answers are not) and at most Burst messages at once then
// one per Every; what the rate limit holds back is counted and sent as one
// summary when the limit allows. A notification given up on is audited
// as `event: notify` (target: the sink's name, outcome failure); its
// error never contains the URL or the key, which are secrets.
package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/rs/zerolog"
	"golang.org/x/time/rate"

	"github.com/cloudcron/scheduler/internal/audit"
	"github.com/cloudcron/scheduler/internal/observe"
)

// EventNotify is the audit event of a notification given up on.
const EventNotify = "notify"

// SignatureHeader carries "sha256=" + hex HMAC-SHA256 of the webhook body.
const SignatureHeader = "X-Scheduler-Signature"

// queueSize bounds each sink's queue.
const queueSize = 256

// Config is one sink, with its secrets resolved.
type Config struct {
	Name   string
	Type   string // slack | teams | webhook
	URL    string // secret
	Secret string // webhook HMAC key; secret
	On     []string
	Jobs   []string // empty: all
}

// Options tune a Notifier; zero values take the defaults.
type Options struct {
	Log    zerolog.Logger
	Audit  func(audit.Record) error // writes the notify failure records
	Client *http.Client             // default: 10 s timeout
	Source string                   // CloudEvents source; default "/scheduler"
	// Every and Burst are each sink's rate limit: Burst messages at once,
	// then one per Every. Default one per 10 s, burst 5.
	Every time.Duration
	Burst int
	// MaxElapsed bounds one notification's retries; default 2 minutes.
	MaxElapsed time.Duration
	Now        func() time.Time
}

// Notifier fans records out to the configured sinks.
type Notifier struct {
	opts Options
	log  zerolog.Logger

	mu    sync.Mutex
	sinks []*sink
	wg    sync.WaitGroup
}

// New returns a notifier without sinks; Configure adds them.
func New(opts Options) *Notifier {
	if opts.Client == nil {
		opts.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if opts.Source == "" {
		opts.Source = "/scheduler"
	}
	if opts.Every == 0 {
		opts.Every = 10 * time.Second
	}
	if opts.Burst == 0 {
		opts.Burst = 5
	}
	if opts.MaxElapsed == 0 {
		opts.MaxElapsed = 2 * time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Notifier{opts: opts, log: opts.Log.With().Str("component", "notify").Logger()}
}

// Configure replaces the sinks (on start and after a reload). The old
// sinks finish what they queued.
func (n *Notifier) Configure(cfgs []Config) {
	next := make([]*sink, 0, len(cfgs))
	for _, c := range cfgs {
		s := &sink{cfg: c, n: n, q: make(chan item, queueSize), lim: rate.NewLimiter(rate.Every(n.opts.Every), n.opts.Burst),
			suppressed: map[string]int{}}
		next = append(next, s)
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			s.run()
		}()
	}
	n.mu.Lock()
	old := n.sinks
	n.sinks = next
	n.mu.Unlock()
	for _, s := range old {
		close(s.q)
	}
}

// Close stops taking notifications and waits up to ctx for the queued
// ones to be sent.
func (n *Notifier) Close(ctx context.Context) {
	n.Configure(nil)
	done := make(chan struct{})
	go func() { n.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		n.log.Warn().Msg("notifications still queued at shutdown were dropped")
	}
}

// item is one notification: the event name and the record it is about.
type item struct {
	event string
	rec   audit.Record
}

// Events returns the notification events a record stands for.
func Events(r audit.Record) []string {
	switch r.Event {
	case EventNotify:
		return nil // never notify about notifying
	case audit.EventReload:
		if r.Outcome != audit.OutcomeSuccess {
			return []string{"reload_failed"}
		}
		return nil
	case "reconcile", "override":
		return []string{r.Event}
	}
	switch r.Outcome {
	case audit.OutcomeFailure, audit.OutcomeVerifyFailed, audit.OutcomeUnknown, audit.OutcomeMissed:
		return []string{r.Outcome}
	}
	return nil
}

// Observe queues the notifications a batch calls for. It never blocks.
func (n *Notifier) Observe(b observe.Batch) {
	var items []item
	if b.Err != nil {
		items = append(items, item{event: "audit_failed", rec: audit.Record{Time: n.opts.Now().UTC(), Event: "audit_failed",
			Outcome: audit.OutcomeFailure, Error: b.Err.Error()}})
	} else {
		for _, r := range b.Records {
			for _, e := range Events(r) {
				items = append(items, item{event: e, rec: r})
			}
		}
	}
	if len(items) == 0 {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, s := range n.sinks {
		for _, it := range items {
			if !slices.Contains(s.cfg.On, it.event) || len(s.cfg.Jobs) > 0 && !slices.Contains(s.cfg.Jobs, it.rec.Job) {
				continue
			}
			select {
			case s.q <- it:
			default:
				s.mu.Lock()
				s.suppressed[it.event]++
				s.mu.Unlock()
			}
		}
	}
}

type sink struct {
	cfg Config
	n   *Notifier
	q   chan item
	lim *rate.Limiter

	mu         sync.Mutex
	suppressed map[string]int // by event: held back by the rate limit or a full queue
}

func (s *sink) run() {
	var flush *time.Timer
	var flushC <-chan time.Time
	for {
		select {
		case it, ok := <-s.q:
			if !ok {
				s.sendSummary()
				return
			}
			if !s.lim.Allow() {
				s.mu.Lock()
				s.suppressed[it.event]++
				s.mu.Unlock()
				if flush == nil {
					d := s.lim.Reserve().Delay() // the summary's turn
					flush = time.NewTimer(d)
					flushC = flush.C
				}
				continue
			}
			s.sendSummary()
			s.deliver(it.event, it.rec, s.render(it))
		case <-flushC:
			flush, flushC = nil, nil
			s.sendSummary()
		}
	}
}

// sendSummary sends one message counting what was suppressed, if anything
// was, in a rate-limit turn its caller holds.
func (s *sink) sendSummary() {
	s.mu.Lock()
	counts := s.suppressed
	s.suppressed = map[string]int{}
	s.mu.Unlock()
	total := 0
	for _, c := range counts {
		total += c
	}
	if total == 0 {
		return
	}
	s.deliver("suppressed", audit.Record{}, s.renderSummary(total, counts))
}

// message is a rendered notification.
type message struct {
	body        []byte
	contentType string
}

func (s *sink) render(it item) message {
	switch s.cfg.Type {
	case "slack":
		return slackMessage(it.event, it.rec)
	case "teams":
		return teamsMessage(it.event, it.rec)
	}
	return cloudEvent(s.n.opts.Source, it.event, it.rec, s.n.opts.Now())
}

func (s *sink) renderSummary(total int, counts map[string]int) message {
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s: %d", k, counts[k])
	}
	text := fmt.Sprintf("%d notifications suppressed by the rate limit (%s); see `scheduler status` or `scheduler audit` for each.", total, strings.Join(parts, ", "))
	switch s.cfg.Type {
	case "slack":
		return slackText(":mute: Notifications suppressed", text)
	case "teams":
		return teamsText("Notifications suppressed", text)
	}
	return cloudEventData(s.n.opts.Source, "suppressed", "", map[string]any{"suppressed": total, "by_event": counts, "text": text}, s.n.opts.Now())
}

// deliver sends m with retries; a notification given up on is audited.
func (s *sink) deliver(event string, rec audit.Record, m message) {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 500 * time.Millisecond
	b.MaxInterval = 30 * time.Second
	b.MaxElapsedTime = s.n.opts.MaxElapsed
	attempts := 0
	err := backoff.Retry(func() error {
		attempts++
		return s.post(m)
	}, b)
	if err == nil {
		return
	}
	s.n.log.Error().Str("notify", s.cfg.Name).Str("type", s.cfg.Type).Str("event", event).Str("job", rec.Job).
		Int("attempts", attempts).Str("error", err.Error()).Msg("notification not delivered")
	if s.n.opts.Audit == nil {
		return
	}
	ar := audit.Record{Time: s.n.opts.Now().UTC(), Event: EventNotify, Job: rec.Job, Scheduled: rec.Scheduled, Action: rec.Action,
		Account: rec.Account, Target: s.cfg.Name, Attempt: attempts, Outcome: audit.OutcomeFailure, Error: err.Error(),
		Detail: fmt.Sprintf("%s notification %q about %s of run %s not delivered", s.cfg.Type, s.cfg.Name, event, rec.RunID)}
	if aerr := s.n.opts.Audit(ar); aerr != nil {
		s.n.log.Error().Str("notify", s.cfg.Name).Str("error", aerr.Error()).Msg("could not audit an undelivered notification")
	}
}

// post sends one request. Its errors never contain the URL or the key.
func (s *sink) post(m message) error {
	req, err := http.NewRequest(http.MethodPost, s.cfg.URL, bytes.NewReader(m.body))
	if err != nil {
		return backoff.Permanent(errors.New("the configured url is not a valid URL"))
	}
	req.Header.Set("Content-Type", m.contentType)
	req.Header.Set("User-Agent", "cloudcron-scheduler")
	if s.cfg.Type == "webhook" && s.cfg.Secret != "" {
		req.Header.Set(SignatureHeader, Sign([]byte(s.cfg.Secret), m.body))
	}
	resp, err := s.n.opts.Client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error prints the URL, which carries the token
		}
		return fmt.Errorf("%s: %s", s.cfg.Type, s.scrub(err.Error()))
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode < 300 {
		return nil
	}
	err = fmt.Errorf("%s: HTTP %d: %s", s.cfg.Type, resp.StatusCode, s.scrub(strings.TrimSpace(string(body))))
	if resp.StatusCode >= 500 || resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusRequestTimeout {
		return err
	}
	return backoff.Permanent(err)
}

// scrub removes the URL, its path and query, and the key from text.
func (s *sink) scrub(text string) string {
	secrets := []string{s.cfg.URL, s.cfg.Secret}
	if u, err := url.Parse(s.cfg.URL); err == nil {
		secrets = append(secrets, u.Path, u.RawQuery, u.EscapedPath())
	}
	for _, sec := range secrets {
		if len(sec) >= 4 {
			text = strings.ReplaceAll(text, sec, "[redacted]")
		}
	}
	return text
}

// Sign returns the X-Scheduler-Signature value of body: "sha256=" and the
// hex HMAC-SHA256 of the exact body bytes under key.
func Sign(key, body []byte) string {
	mac := hmac.New(sha256.New, key)
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}
