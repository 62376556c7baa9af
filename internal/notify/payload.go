package notify

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/cloudcron/scheduler/internal/audit"
)

// title is the one-line summary of a notification.
func title(event string, r audit.Record) string {
	who := r.Job
	if who == "" {
		who = "scheduler"
	}
	switch event {
	case "failure":
		return fmt.Sprintf("%s failed on %s", who, r.Target)
	case "verify_failed":
		return fmt.Sprintf("%s: %s did not reach its target state", who, r.Target)
	case "unknown":
		return fmt.Sprintf("%s: outcome unknown on %s; check it by hand", who, r.Target)
	case "missed":
		return fmt.Sprintf("%s missed a fire on %s", who, r.Target)
	case "reconcile":
		return fmt.Sprintf("window %s corrected drift on %s", who, r.Target)
	case "override":
		return fmt.Sprintf("window %s: override %s", who, r.Detail)
	case "reload_failed":
		return "config reload rejected; the previous schedule keeps running"
	case "audit_failed":
		return "audit log write failed; vendor calls stop until it is fixed"
	}
	return event + ": " + who
}

// facts are the record's fields worth showing, in order, without empties.
func facts(r audit.Record) [][2]string {
	var out [][2]string
	add := func(k, v string) {
		if v != "" {
			out = append(out, [2]string{k, v})
		}
	}
	add("Job", r.Job)
	add("Action", r.Action)
	add("Account", r.Account)
	add("Target", r.Target)
	if !r.Scheduled.IsZero() {
		add("Scheduled", r.Scheduled.Format(time.RFC3339))
	}
	add("Outcome", r.Outcome)
	if r.Attempt > 0 {
		add("Attempt", strconv.Itoa(r.Attempt))
	}
	if r.HTTPStatus > 0 {
		add("HTTP status", strconv.Itoa(r.HTTPStatus))
	}
	add("Vendor code", r.VendorCode)
	add("Request id", r.RequestID)
	add("Run id", r.RunID)
	return out
}

func detailText(r audit.Record) string {
	switch {
	case r.Error != "" && r.Detail != "":
		return r.Error + " (" + r.Detail + ")"
	case r.Error != "":
		return r.Error
	}
	return r.Detail
}

func cut(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

// Slack incoming webhook: Block Kit blocks, with text as the fallback
// shown in notifications and by clients without blocks.
// https://api.slack.com/messaging/webhooks, https://api.slack.com/reference/block-kit/blocks
type slackText0 struct {
	Type string `json:"type"`
	Text string `json:"text"`
}

type slackBlock struct {
	Type     string       `json:"type"`
	Text     *slackText0  `json:"text,omitempty"`
	Fields   []slackText0 `json:"fields,omitempty"`
	Elements []slackText0 `json:"elements,omitempty"`
}

type slackPayload struct {
	Text   string       `json:"text"`
	Blocks []slackBlock `json:"blocks"`
}

// escapeMrkdwn escapes the three characters Slack's mrkdwn treats as
// control characters.
func escapeMrkdwn(s string) string {
	out := make([]rune, 0, len(s))
	for _, c := range s {
		switch c {
		case '&':
			out = append(out, []rune("&amp;")...)
		case '<':
			out = append(out, []rune("&lt;")...)
		case '>':
			out = append(out, []rune("&gt;")...)
		default:
			out = append(out, c)
		}
	}
	return string(out)
}

func slackMessage(event string, r audit.Record) message {
	t := title(event, r)
	p := slackPayload{Text: cut(t+": "+detailText(r), 3000)}
	p.Blocks = append(p.Blocks, slackBlock{Type: "header", Text: &slackText0{Type: "plain_text", Text: cut(t, 150)}})
	if d := detailText(r); d != "" {
		p.Blocks = append(p.Blocks, slackBlock{Type: "section", Text: &slackText0{Type: "mrkdwn", Text: cut(escapeMrkdwn(d), 3000)}})
	}
	var fields []slackText0
	for _, f := range facts(r) {
		if len(fields) == 10 { // Block Kit: at most 10 fields per section
			break
		}
		fields = append(fields, slackText0{Type: "mrkdwn", Text: cut("*"+f[0]+"*\n"+escapeMrkdwn(f[1]), 2000)})
	}
	if len(fields) > 0 {
		p.Blocks = append(p.Blocks, slackBlock{Type: "section", Fields: fields})
	}
	p.Blocks = append(p.Blocks, slackBlock{Type: "context", Elements: []slackText0{{Type: "mrkdwn",
		Text: "scheduler · " + event + " · " + r.Time.UTC().Format(time.RFC3339)}}})
	b, _ := json.Marshal(p)
	return message{body: b, contentType: "application/json"}
}

func slackText(head, text string) message {
	b, _ := json.Marshal(slackPayload{Text: cut(text, 3000), Blocks: []slackBlock{
		{Type: "header", Text: &slackText0{Type: "plain_text", Text: cut(head, 150)}},
		{Type: "section", Text: &slackText0{Type: "mrkdwn", Text: cut(escapeMrkdwn(text), 3000)}},
	}})
	return message{body: b, contentType: "application/json"}
}

// Teams Workflows webhook ("Post to a channel when a webhook request is
// received"): a message with one Adaptive Card attachment.
type teamsPayload struct {
	Type        string            `json:"type"`
	Attachments []teamsAttachment `json:"attachments"`
}

type teamsAttachment struct {
	ContentType string       `json:"contentType"`
	ContentURL  *string      `json:"contentUrl"`
	Content     adaptiveCard `json:"content"`
}

type adaptiveCard struct {
	Schema  string           `json:"$schema"`
	Type    string           `json:"type"`
	Version string           `json:"version"`
	Body    []map[string]any `json:"body"`
}

func teamsCard(head, text, color string, fs [][2]string) message {
	body := []map[string]any{
		{"type": "TextBlock", "text": head, "weight": "Bolder", "size": "Medium", "wrap": true, "color": color},
	}
	if text != "" {
		body = append(body, map[string]any{"type": "TextBlock", "text": text, "wrap": true})
	}
	if len(fs) > 0 {
		var facts []map[string]string
		for _, f := range fs {
			facts = append(facts, map[string]string{"title": f[0], "value": f[1]})
		}
		body = append(body, map[string]any{"type": "FactSet", "facts": facts})
	}
	p := teamsPayload{Type: "message", Attachments: []teamsAttachment{{
		ContentType: "application/vnd.microsoft.card.adaptive",
		Content: adaptiveCard{Schema: "http://adaptivecards.io/schemas/adaptive-card.json", Type: "AdaptiveCard",
			Version: "1.4", Body: body},
	}}}
	b, _ := json.Marshal(p)
	return message{body: b, contentType: "application/json"}
}

func teamsMessage(event string, r audit.Record) message {
	color := "Attention"
	if event == "reconcile" || event == "override" || event == "missed" {
		color = "Warning"
	}
	return teamsCard(title(event, r), detailText(r), color, facts(r))
}

func teamsText(head, text string) message { return teamsCard(head, text, "Warning", nil) }

// CloudEvents 1.0, structured content mode, JSON format.
// https://github.com/cloudevents/spec/blob/v1.0.2/cloudevents/spec.md
type cloudEventBody struct {
	SpecVersion     string `json:"specversion"`
	ID              string `json:"id"`
	Source          string `json:"source"`
	Type            string `json:"type"`
	Time            string `json:"time"`
	Subject         string `json:"subject,omitempty"`
	DataContentType string `json:"datacontenttype"`
	Data            any    `json:"data"`
}

// EventTypePrefix is the CloudEvents type of a notification, before the
// event name (failure, reconcile, …).
const EventTypePrefix = "io.cloudcron.scheduler."

func cloudEvent(source, event string, r audit.Record, now time.Time) message {
	return cloudEventData(source, event, r.Job, r, now)
}

func cloudEventData(source, event, subject string, data any, now time.Time) message {
	var id [16]byte
	_, _ = rand.Read(id[:])
	b, _ := json.Marshal(cloudEventBody{SpecVersion: "1.0", ID: hex.EncodeToString(id[:]), Source: source,
		Type: EventTypePrefix + event, Time: now.UTC().Format(time.RFC3339Nano), Subject: subject,
		DataContentType: "application/json", Data: data})
	return message{body: b, contentType: "application/cloudevents+json"}
}
