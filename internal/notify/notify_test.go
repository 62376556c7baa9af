package notify

import (
	"context"
	"crypto/hmac"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/cloudcron/scheduler/internal/audit"
	"github.com/cloudcron/scheduler/internal/observe"
)

// receiver is a local webhook endpoint that records what it gets and
// answers with the next status of script (200 when it runs out).
type receiver struct {
	srv *httptest.Server

	mu     sync.Mutex
	got    []received
	script []int
	seen   chan struct{}
}

type received struct {
	header http.Header
	body   []byte
	path   string
}

func newReceiver(t *testing.T, script ...int) *receiver {
	r := &receiver{script: script, seen: make(chan struct{}, 100)}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.got = append(r.got, received{req.Header.Clone(), b, req.URL.Path})
		code := 200
		if len(r.script) > 0 {
			code, r.script = r.script[0], r.script[1:]
		}
		r.mu.Unlock()
		w.WriteHeader(code)
		if code != 200 {
			// A receiver that echoes the request path (the token) back.
			_, _ = io.WriteString(w, "invalid_token for "+req.URL.Path)
		}
		r.seen <- struct{}{}
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) wait(t *testing.T, n int) []received {
	t.Helper()
	for range n {
		select {
		case <-r.seen:
		case <-time.After(10 * time.Second):
			t.Fatalf("receiver got %d requests; want %d", len(r.got), n)
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]received(nil), r.got...)
}

const secretPath = "/services/T0001/B0002/s3cr3tT0ken"

var failure = audit.Record{Time: time.Date(2026, 12, 7, 0, 0, 1, 0, time.UTC), Event: audit.EventAttempt, Job: "kill-runaway",
	RunID: "kill-runaway@2026-12-07T09:00:00+09:00", Scheduled: time.Date(2026, 12, 7, 9, 0, 0, 0, time.FixedZone("KST", 9*3600)),
	Action: "dataforest.aiapp.kill", Account: "ncp-prod", Target: "app-<1>&", Attempt: 1, Outcome: audit.OutcomeFailure,
	HTTPStatus: 403, VendorCode: "403", Error: "dataforest: kill app app-1: not allowed or not exists", DurationMS: 120}

func newNotifier(t *testing.T, audits *[]audit.Record, mu *sync.Mutex, cfgs ...Config) *Notifier {
	n := New(Options{Log: zerolog.Nop(), MaxElapsed: 3 * time.Second, Every: time.Hour, Burst: 100,
		Audit: func(r audit.Record) error { mu.Lock(); defer mu.Unlock(); *audits = append(*audits, r); return nil }})
	n.Configure(cfgs)
	t.Cleanup(func() { n.Close(context.Background()) })
	return n
}

func TestSlackPayload(t *testing.T) {
	rcv := newReceiver(t)
	var audits []audit.Record
	var mu sync.Mutex
	n := newNotifier(t, &audits, &mu, Config{Name: "ops", Type: "slack", URL: rcv.srv.URL + secretPath, On: []string{"failure"}})
	n.Observe(observe.Batch{Records: []audit.Record{failure, {Event: audit.EventAttempt, Job: "x", Outcome: audit.OutcomeSuccess}}})
	got := rcv.wait(t, 1)[0]
	if ct := got.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	// Slack incoming webhook: text (the fallback) and blocks of known types.
	var p struct {
		Text   string `json:"text"`
		Blocks []struct {
			Type string `json:"type"`
			Text *struct {
				Type string `json:"type"`
				Text string `json:"text"`
			} `json:"text"`
			Fields []struct {
				Type string `json:"type"`
				Text string `json:"text"`
			} `json:"fields"`
			Elements []struct {
				Type string `json:"type"`
				Text string `json:"text"`
			} `json:"elements"`
		} `json:"blocks"`
	}
	dec := json.NewDecoder(strings.NewReader(string(got.body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("slack body %s: %v", got.body, err)
	}
	if !strings.Contains(p.Text, "kill-runaway failed") || !strings.Contains(p.Text, "not allowed") {
		t.Errorf("fallback text = %q; want the job, the failure and the error", p.Text)
	}
	if len(p.Blocks) == 0 || p.Blocks[0].Type != "header" || p.Blocks[0].Text.Type != "plain_text" || len([]rune(p.Blocks[0].Text.Text)) > 150 {
		t.Errorf("first block = %+v; want a plain_text header of at most 150 characters", p.Blocks[0])
	}
	for _, b := range p.Blocks {
		switch b.Type {
		case "header", "section", "context":
		default:
			t.Errorf("block type %q is not a Block Kit layout block", b.Type)
		}
		if len(b.Fields) > 10 {
			t.Errorf("section with %d fields; Block Kit allows 10", len(b.Fields))
		}
		for _, f := range b.Fields {
			if f.Type != "mrkdwn" || strings.ContainsAny(strings.ReplaceAll(strings.ReplaceAll(strings.ReplaceAll(f.Text, "&amp;", ""), "&lt;", ""), "&gt;", ""), "<>&") {
				t.Errorf("field %+v: want mrkdwn with <, > and & escaped", f)
			}
		}
		if b.Type == "context" && (len(b.Elements) == 0 || b.Elements[0].Type != "mrkdwn") {
			t.Errorf("context block %+v: want mrkdwn elements", b)
		}
	}
	escaped := false
	for _, b := range p.Blocks {
		for _, f := range b.Fields {
			escaped = escaped || f.Text == "*Target*\napp-&lt;1&gt;&amp;"
		}
	}
	if !escaped {
		t.Errorf("target not escaped for mrkdwn in %s", got.body)
	}
	if len(rcv.got) != 1 {
		t.Errorf("%d requests; the success must not notify", len(rcv.got))
	}
}

func TestTeamsPayload(t *testing.T) {
	rcv := newReceiver(t)
	var audits []audit.Record
	var mu sync.Mutex
	n := newNotifier(t, &audits, &mu, Config{Name: "teams", Type: "teams", URL: rcv.srv.URL + "/workflows/abc", On: []string{"failure", "reload_failed"}})
	n.Observe(observe.Batch{Records: []audit.Record{{Event: audit.EventReload, Outcome: audit.OutcomeFailure, Error: "config.yaml:3:5: bad"}}})
	got := rcv.wait(t, 1)[0]
	// Teams Workflows webhook: a message whose attachment is an Adaptive Card.
	var p struct {
		Type        string `json:"type"`
		Attachments []struct {
			ContentType string  `json:"contentType"`
			ContentURL  *string `json:"contentUrl"`
			Content     struct {
				Schema  string           `json:"$schema"`
				Type    string           `json:"type"`
				Version string           `json:"version"`
				Body    []map[string]any `json:"body"`
			} `json:"content"`
		} `json:"attachments"`
	}
	dec := json.NewDecoder(strings.NewReader(string(got.body)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("teams body %s: %v", got.body, err)
	}
	if p.Type != "message" || len(p.Attachments) != 1 {
		t.Fatalf("teams body = %s; want a message with one attachment", got.body)
	}
	a := p.Attachments[0]
	if a.ContentType != "application/vnd.microsoft.card.adaptive" || a.Content.Type != "AdaptiveCard" || a.Content.Version == "" ||
		a.Content.Schema != "http://adaptivecards.io/schemas/adaptive-card.json" {
		t.Errorf("attachment = %+v; want an Adaptive Card", a)
	}
	if len(a.Content.Body) == 0 || a.Content.Body[0]["type"] != "TextBlock" || !strings.Contains(a.Content.Body[0]["text"].(string), "reload rejected") {
		t.Errorf("card body = %v; want a TextBlock title naming the rejected reload", a.Content.Body)
	}
	for _, el := range a.Content.Body {
		if ty := el["type"]; ty != "TextBlock" && ty != "FactSet" {
			t.Errorf("card element type %v", ty)
		}
	}
}

func TestWebhookCloudEventAndSignature(t *testing.T) {
	rcv := newReceiver(t)
	var audits []audit.Record
	var mu sync.Mutex
	key := "hmac-k3y"
	n := newNotifier(t, &audits, &mu, Config{Name: "siem", Type: "webhook", URL: rcv.srv.URL + "/hook", Secret: key,
		On: []string{"failure"}, Jobs: []string{"kill-runaway"}})
	other := failure
	other.Job = "other-job"
	n.Observe(observe.Batch{Records: []audit.Record{other, failure}})
	got := rcv.wait(t, 1)[0]
	if ct := got.header.Get("Content-Type"); ct != "application/cloudevents+json" {
		t.Errorf("Content-Type = %q; want application/cloudevents+json (structured mode)", ct)
	}
	// The signature verifies over the exact body bytes.
	sig := got.header.Get(SignatureHeader)
	if !strings.HasPrefix(sig, "sha256=") || !hmac.Equal([]byte(sig), []byte(Sign([]byte(key), got.body))) {
		t.Errorf("%s = %q does not verify", SignatureHeader, sig)
	}
	if hmac.Equal([]byte(sig), []byte(Sign([]byte("wrong"), got.body))) {
		t.Error("signature verifies under a wrong key")
	}
	var ev map[string]json.RawMessage
	if err := json.Unmarshal(got.body, &ev); err != nil {
		t.Fatal(err)
	}
	// CloudEvents 1.0 required attributes: id, source, specversion, type.
	str := func(k string) string {
		var s string
		_ = json.Unmarshal(ev[k], &s)
		return s
	}
	if str("specversion") != "1.0" || str("id") == "" || str("source") == "" || str("type") != "io.cloudcron.scheduler.failure" {
		t.Errorf("cloudevent attributes = specversion %q id %q source %q type %q", str("specversion"), str("id"), str("source"), str("type"))
	}
	if _, err := time.Parse(time.RFC3339, str("time")); err != nil || str("datacontenttype") != "application/json" || str("subject") != "kill-runaway" {
		t.Errorf("time %q, datacontenttype %q, subject %q", str("time"), str("datacontenttype"), str("subject"))
	}
	// data is the audit record, as the audit log writes it.
	var data audit.Record
	if err := json.Unmarshal(ev["data"], &data); err != nil {
		t.Fatal(err)
	}
	want, _ := json.Marshal(failure)
	if gotData, _ := json.Marshal(data); string(gotData) != string(want) {
		t.Errorf("data = %s; want the record %s", gotData, want)
	}
	if len(rcv.got) != 1 {
		t.Errorf("%d requests; the jobs filter must drop other-job", len(rcv.got))
	}
}

func TestRetryThenGiveUpAuditsWithoutSecrets(t *testing.T) {
	// 503 then 200: retried and delivered. Then 400: not retried, audited.
	rcv := newReceiver(t, 503, 200, 400)
	var audits []audit.Record
	var mu sync.Mutex
	n := newNotifier(t, &audits, &mu, Config{Name: "ops", Type: "webhook", URL: rcv.srv.URL + secretPath + "?token=q5ecret", Secret: "k3y-secret", On: []string{"failure"}})
	n.Observe(observe.Batch{Records: []audit.Record{failure}})
	rcv.wait(t, 2)
	n.Observe(observe.Batch{Records: []audit.Record{failure}})
	rcv.wait(t, 1)
	n.Close(context.Background())
	mu.Lock()
	defer mu.Unlock()
	if len(audits) != 1 {
		t.Fatalf("%d notify records; want 1 (the 400)", len(audits))
	}
	a := audits[0]
	if a.Event != EventNotify || a.Target != "ops" || a.Outcome != audit.OutcomeFailure || a.Job != "kill-runaway" || a.Attempt != 1 || !strings.Contains(a.Error, "HTTP 400") {
		t.Errorf("notify record = %+v; want event notify, target ops, failure after 1 attempt with HTTP 400", a)
	}
	line, _ := json.Marshal(a)
	for _, s := range []string{"s3cr3tT0ken", "q5ecret", "k3y-secret", "127.0.0.1"} {
		if strings.Contains(string(line), s) {
			t.Errorf("notify record leaks %q: %s", s, line)
		}
	}
}

func TestUnreachableErrorHasNoURL(t *testing.T) {
	var audits []audit.Record
	var mu sync.Mutex
	n := New(Options{Log: zerolog.Nop(), MaxElapsed: 2 * time.Second, Every: time.Hour, Burst: 10,
		Audit: func(r audit.Record) error { mu.Lock(); defer mu.Unlock(); audits = append(audits, r); return nil }})
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL + secretPath
	srv.Close() // nothing listens any more
	n.Configure([]Config{{Name: "ops", Type: "slack", URL: url, On: []string{"failure"}}})
	n.Observe(observe.Batch{Records: []audit.Record{failure}})
	n.Close(context.Background())
	mu.Lock()
	defer mu.Unlock()
	if len(audits) != 1 || audits[0].Attempt < 2 {
		t.Fatalf("audits = %+v; want one notify record after retries", audits)
	}
	if strings.Contains(audits[0].Error, "s3cr3t") || strings.Contains(audits[0].Error, "services") || !strings.Contains(audits[0].Error, "refused") {
		t.Errorf("error %q: want the cause without the URL", audits[0].Error)
	}
}

func TestRateLimitSummarizesSuppressed(t *testing.T) {
	rcv := newReceiver(t)
	n := New(Options{Log: zerolog.Nop(), Every: 300 * time.Millisecond, Burst: 2})
	n.Configure([]Config{{Name: "ops", Type: "slack", URL: rcv.srv.URL + "/x", On: []string{"failure", "missed"}}})
	defer n.Close(context.Background())
	recs := make([]audit.Record, 7)
	for i := range recs {
		recs[i] = failure
	}
	recs[6].Outcome = audit.OutcomeMissed
	n.Observe(observe.Batch{Records: recs})
	got := rcv.wait(t, 3) // two within the burst, then one summary
	var p slackPayload
	if err := json.Unmarshal(got[2].body, &p); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(p.Text, "5 notifications suppressed") || !strings.Contains(p.Text, "failure: 4") || !strings.Contains(p.Text, "missed: 1") {
		t.Errorf("summary = %q; want 5 suppressed, failure: 4, missed: 1", p.Text)
	}
}

func TestObserveNeverBlocks(t *testing.T) {
	hang := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-hang }))
	defer srv.Close()
	defer close(hang)
	n := New(Options{Log: zerolog.Nop(), Every: time.Nanosecond, Burst: 1000, MaxElapsed: time.Second})
	n.Configure([]Config{{Name: "slow", Type: "webhook", URL: srv.URL, On: []string{"failure"}}})
	recs := make([]audit.Record, 2*queueSize)
	for i := range recs {
		recs[i] = failure
	}
	done := make(chan struct{})
	go func() {
		n.Observe(observe.Batch{Records: recs}) // more than the queue holds, receiver stuck
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Observe blocked on a stuck receiver")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	n.Close(ctx)
}
