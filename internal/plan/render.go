package plan

import (
	"encoding/json"
	"fmt"
	"html"
	"io"
	"strings"
	"time"
)

const stamp = "2006-01-02 15:04 -07:00 Mon"

// Text writes the plan for people.
func (p *Plan) Text(w io.Writer) error {
	ew := &errWriter{w: w}
	ew.printf("Plan from %s to %s (%s)\n", p.From.Format(stamp), p.To.Format(stamp), p.To.Sub(p.From).Round(time.Minute))
	for _, win := range p.Windows {
		ew.printf("\nwindow %s: %s on account %s, %d target(s), %s, drift %s", win.Name, win.Resource, win.Account, len(win.Targets), win.Zone, win.Drift)
		if win.Drift == "enforce" {
			ew.printf(" every %s", win.CheckEvery)
		}
		if len(win.After) > 0 {
			ew.printf(", after %s", strings.Join(win.After, ", "))
		}
		ew.printf("\n")
		for _, d := range win.Days {
			ew.printf("  %s  %-9s %s\n", d.Date, d.Kind, d.Note)
		}
		for _, o := range win.Overrides {
			who := "every target"
			if o.Target != "" {
				who = o.Target
			}
			ew.printf("  override  %s %s from %s until %s\n", who, o.State, o.From.In(p.From.Location()).Format(stamp), o.Until.In(p.From.Location()).Format(stamp))
		}
		if len(win.Edges) == 0 {
			ew.printf("  no edges\n")
		}
		for _, e := range win.Edges {
			ew.printf("  %s  %-3s  %-26s %s", e.Time.Format(stamp), e.State, e.Action, strings.Join(e.Targets, ", "))
			if e.Note != "" {
				ew.printf("  [%s]", e.Note)
			}
			ew.printf("\n")
		}
		ew.printf("  on %.2fh, off %.2fh per target", win.OnHours, win.OffHours)
		if win.Savings != nil {
			ew.printf("; saves %.2fh × %d target(s) × %g/h = %.2f against running all the time", win.OffHours, len(win.Targets), *win.HourlyCost, *win.Savings)
		}
		ew.printf("\n")
		for _, n := range win.Notes {
			ew.printf("  note: %s\n", n)
		}
	}
	if len(p.Jobs) > 0 {
		ew.printf("\njobs\n")
	}
	for _, f := range p.Jobs {
		ew.printf("  %s  %-24s %-28s %s  %s", f.Time.Format(stamp), f.Job, f.Action, strings.Join(f.Targets, ", "), f.Zone)
		if f.Note != "" {
			ew.printf("  [%s]", f.Note)
		}
		ew.printf("\n")
	}
	return ew.err
}

// JSON writes the plan as one JSON object.
func (p *Plan) JSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(p)
}

type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) printf(format string, args ...any) {
	if e.err == nil {
		_, e.err = fmt.Fprintf(e.w, format, args...)
	}
}

// SVG writes a week chart: a row per window with its on-spans, its
// holidays and off dates shaded, DST days marked, and a row of job fires;
// the time axis is the config's zone. The SVG is self-contained.
func (p *Plan) SVG(w io.Writer) error {
	const (
		left, right, top = 170.0, 20.0, 50.0
		width            = 1100.0
		rowH             = 34.0
	)
	rows := len(p.Windows)
	if len(p.Jobs) > 0 {
		rows++
	}
	height := top + float64(rows)*rowH + 50
	span := p.To.Sub(p.From).Seconds()
	x := func(t time.Time) float64 {
		f := t.Sub(p.From).Seconds() / span
		f = min(max(f, 0), 1)
		return left + f*(width-left-right)
	}
	ew := &errWriter{w: w}
	ew.printf(`<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	ew.printf(`<rect width="100%%" height="100%%" fill="#ffffff"/>` + "\n")
	ew.printf(`<text x="%.0f" y="20" font-size="14" font-weight="bold">%s</text>`+"\n", left, esc(fmt.Sprintf("Plan %s – %s (%s)", p.From.Format("2006-01-02 15:04"), p.To.Format("2006-01-02 15:04 -07:00"), p.Zone)))
	// Day grid in the config's zone.
	loc := p.From.Location()
	d := time.Date(p.From.Year(), p.From.Month(), p.From.Day(), 0, 0, 0, 0, loc)
	for ; d.Before(p.To); d = time.Date(d.Year(), d.Month(), d.Day()+1, 0, 0, 0, 0, loc) {
		if d.Before(p.From) {
			continue
		}
		ew.printf(`<line x1="%.1f" y1="%.0f" x2="%.1f" y2="%.0f" stroke="#cccccc"/>`+"\n", x(d), top-12, x(d), top+float64(rows)*rowH)
		if x(d) < width-right-60 { // no label for a day that starts at the chart's end
			ew.printf(`<text x="%.1f" y="%.0f">%s</text>`+"\n", x(d)+3, top-16, esc(d.Format("Mon 01-02")))
		}
	}
	for i, win := range p.Windows {
		y := top + float64(i)*rowH
		wloc, _ := time.LoadLocation(win.Zone)
		label := win.Name
		if win.Savings != nil {
			label += fmt.Sprintf(" (saves %.2f)", *win.Savings)
		}
		ew.printf(`<text x="6" y="%.1f">%s</text>`+"\n", y+rowH/2+4, esc(label))
		for _, day := range win.Days {
			dd, err := time.ParseInLocation("2006-01-02", day.Date, wloc)
			if err != nil || wloc == nil {
				continue
			}
			end := dd.AddDate(0, 0, 1)
			color, title := "#f6d6d6", day.Kind+": "+day.Note
			switch day.Kind {
			case "dst":
				color = "#fff2b3"
			case "workday":
				color = "#d9ecff"
			}
			ew.printf(`<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s %s</title></rect>`+"\n",
				x(dd), y+2, x(end)-x(dd), rowH-4, color, esc(day.Date), esc(title))
		}
		for _, iv := range win.Intervals {
			ew.printf(`<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#3c9d5d"><title>on %s – %s</title></rect>`+"\n",
				x(iv.Start), y+9, max(x(iv.End)-x(iv.Start), 1), rowH-18, esc(iv.Start.In(wloc).Format(stamp)), esc(iv.End.In(wloc).Format(stamp)))
		}
		for _, o := range win.Overrides {
			ew.printf(`<rect x="%.1f" y="%.1f" width="%.1f" height="4" fill="#8a4fd1"><title>override %s %s until %s</title></rect>`+"\n",
				x(o.From), y+rowH-8, max(x(o.Until)-x(o.From), 1), esc(o.Target), esc(o.State.String()), esc(o.Until.In(wloc).Format(stamp)))
		}
	}
	if len(p.Jobs) > 0 {
		y := top + float64(len(p.Windows))*rowH
		ew.printf(`<text x="6" y="%.1f">jobs (%d fires)</text>`+"\n", y+rowH/2+4, len(p.Jobs))
		for i, f := range p.Jobs {
			if i >= 2000 {
				break
			}
			ew.printf(`<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#2d5fa8"><title>%s %s %s</title></line>`+"\n",
				x(f.Time), y+8, x(f.Time), y+rowH-8, esc(f.Time.Format(stamp)), esc(f.Job), esc(f.Action))
		}
	}
	ly := top + float64(rows)*rowH + 25
	ew.printf(`<rect x="%.0f" y="%.0f" width="12" height="12" fill="#3c9d5d"/><text x="%.0f" y="%.0f">on</text>`+"\n", left, ly-10, left+16, ly)
	ew.printf(`<rect x="%.0f" y="%.0f" width="12" height="12" fill="#f6d6d6"/><text x="%.0f" y="%.0f">holiday / off date</text>`+"\n", left+60, ly-10, left+76, ly)
	ew.printf(`<rect x="%.0f" y="%.0f" width="12" height="12" fill="#d9ecff"/><text x="%.0f" y="%.0f">make-up working day</text>`+"\n", left+210, ly-10, left+226, ly)
	ew.printf(`<rect x="%.0f" y="%.0f" width="12" height="12" fill="#fff2b3"/><text x="%.0f" y="%.0f">DST change</text>`+"\n", left+370, ly-10, left+386, ly)
	ew.printf(`<rect x="%.0f" y="%.0f" width="12" height="4" fill="#8a4fd1"/><text x="%.0f" y="%.0f">override</text>`+"\n", left+470, ly-6, left+486, ly)
	ew.printf("</svg>\n")
	return ew.err
}

func esc(s string) string { return html.EscapeString(s) }
