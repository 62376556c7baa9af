package plan

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/cloudcron/scheduler/internal/schedule"
	"github.com/cloudcron/scheduler/internal/window"
)

const cfgYAML = `version: 1
timezone: Europe/Berlin
audit: {path: audit.jsonl}
state: {dir: state}
accounts:
  lab: {vendor: sandbox}
jobs:
  - {name: nightly, schedule: "30 2 * * *", account: lab, action: dataforest.notebook.restart, targets: [abc]}
windows:
  - name: nb
    account: lab
    resource: modelarts.notebook
    targets: [nb-1, nb-2]
    on:
      - {days: MON-FRI, from: "09:00", to: "19:00"}
      - {days: SAT, from: "22:00", to: "02:00"}
    off_dates: [2026-03-25]
    hourly_cost: 1.5
  - name: cn
    account: lab
    resource: scnet.notebook
    targets: ["42"]
    timezone: Asia/Shanghai
    on: [{days: MON-FRI, from: "09:00", to: "18:00"}]
    holidays: CN
`

func load(t *testing.T) *schedule.Config {
	t.Helper()
	c, err := schedule.Load("plan.yaml", []byte(cfgYAML), schedule.Options{Anchor: time.Date(2026, 3, 23, 0, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func mustTime(t *testing.T, s string) time.Time {
	t.Helper()
	v, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestBuildDSTWeek(t *testing.T) {
	c := load(t)
	from := mustTime(t, "2026-03-23T00:00:00+01:00")
	p := Build(c, from, from.Add(7*24*time.Hour), nil)
	nb := p.Windows[0]
	// Mon, Tue, Thu, Fri 09-19 (Wed is an off date), Sat 22:00 to the
	// first instant after the 02:00 gap (03:00 CEST, 4 elapsed hours):
	// 4×10h + 4h.
	if nb.OnHours != 44 || nb.OffHours != 124 {
		t.Errorf("on/off hours = %v/%v; want 44/124", nb.OnHours, nb.OffHours)
	}
	if nb.Savings == nil || *nb.Savings != 124*1.5*2 {
		t.Errorf("savings = %v; want %v", *nb.Savings, 124*1.5*2)
	}
	if len(nb.Edges) != 10 {
		t.Fatalf("edges = %d; want 10: %+v", len(nb.Edges), nb.Edges)
	}
	last := nb.Edges[9]
	if !last.Time.Equal(mustTime(t, "2026-03-29T03:00:00+02:00")) || last.Action != "modelarts.notebook.stop" ||
		!strings.Contains(last.Note, "DST") || len(last.Targets) != 2 {
		t.Errorf("last edge = %+v; want the stop at 03:00 CEST marked DST, both targets", last)
	}
	var kinds []string
	for _, d := range nb.Days {
		kinds = append(kinds, d.Date+" "+d.Kind)
	}
	if got := strings.Join(kinds, ","); got != "2026-03-25 off_date,2026-03-29 dst" {
		t.Errorf("days = %s", got)
	}
	if len(p.Jobs) != 7 || !strings.Contains(p.Jobs[6].Note, "fixed-time") {
		t.Errorf("jobs = %+v; want 7 fires, the Sunday one marked DST", p.Jobs)
	}
}

func TestBuildOverridesAndHolidays(t *testing.T) {
	c := load(t)
	from := mustTime(t, "2026-02-09T00:00:00+08:00") // the week before Spring Festival 2026
	to := from.Add(7 * 24 * time.Hour)
	p := Build(c, from, to, nil)
	cn := p.Windows[1]
	var marks []string
	for _, d := range cn.Days {
		marks = append(marks, d.Date+" "+d.Kind)
	}
	if got := strings.Join(marks, ","); !strings.Contains(got, "2026-02-14 workday") || !strings.Contains(got, "2026-02-15 holiday") {
		t.Errorf("CN days = %s; want the make-up Saturday 02-14 and the holiday 02-15", got)
	}
	// Mon–Fri 9h each plus the make-up Saturday.
	if cn.OnHours != 6*9 {
		t.Errorf("CN on-hours = %v; want 54", cn.OnHours)
	}

	// An override keeps nb-2 on over Wednesday night; the window's plan
	// gives nb-2 its own edges.
	from = mustTime(t, "2026-03-23T00:00:00+01:00")
	ov := window.Override{Window: "nb", Target: "nb-2", State: window.On,
		From: mustTime(t, "2026-03-24T18:00:00+01:00"), Until: mustTime(t, "2026-03-25T12:00:00+01:00")}
	p = Build(c, from, from.Add(7*24*time.Hour), []window.Override{ov})
	nb := p.Windows[0]
	if len(nb.Overrides) != 1 {
		t.Fatalf("overrides = %+v", nb.Overrides)
	}
	var sawOwn bool
	for _, e := range nb.Edges {
		if len(e.Targets) == 1 && e.Targets[0] == "nb-2" && e.State == "off" && e.Time.Equal(ov.Until) {
			sawOwn = true
		}
	}
	if !sawOwn {
		t.Errorf("edges = %+v; want nb-2 alone stopped when its override ends", nb.Edges)
	}
	// nb-2 runs 17h more (Tue 19:00 to Wed 12:00, Wed being an off date
	// otherwise): per-target on-hours average it in.
	if nb.OnHours != 44+17.0/2 {
		t.Errorf("on-hours = %v; want %v", nb.OnHours, 44+17.0/2)
	}
}

func TestRender(t *testing.T) {
	c := load(t)
	from := mustTime(t, "2026-03-23T00:00:00+01:00")
	p := Build(c, from, from.Add(7*24*time.Hour), nil)
	var text, js, svg bytes.Buffer
	if err := p.Text(&text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"window nb:", "2026-03-29 03:00 +02:00 Sun  off  modelarts.notebook.stop", "saves 124.00h × 2 target(s) × 1.5/h = 372.00"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, text.String())
		}
	}
	if err := p.JSON(&js); err != nil {
		t.Fatal(err)
	}
	var back Plan
	if err := json.Unmarshal(js.Bytes(), &back); err != nil || len(back.Windows) != 2 || back.Windows[0].Edges[0].Action != "modelarts.notebook.start" {
		t.Fatalf("JSON does not read back: %v %+v", err, back)
	}
	if err := p.SVG(&svg); err != nil {
		t.Fatal(err)
	}
	dec := xml.NewDecoder(&svg)
	rects := 0
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("SVG is not well-formed XML: %v", err)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "rect" {
			rects++
		}
	}
	if rects < 10 {
		t.Errorf("SVG has %d rects; want the on-spans of both windows", rects)
	}
}
