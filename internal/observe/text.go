package observe

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteText prints st for a terminal (`scheduler status`): the daemon's
// health, then jobs, windows, overrides, throttled accounts and recent
// failures, each a table. Times are shown in the local zone of the
// reader; relative times count from st.Time.
func WriteText(w io.Writer, st Status) {
	ready := "ready"
	if !st.Ready {
		ready = "NOT READY"
	}
	fmt.Fprintf(w, "scheduler %s: %s, up %s, config %s\n", st.Version, ready, roundDur(st.Time.Sub(st.Started)), st.Config)
	// A cluster problem is the readiness reason too: the cluster line says it.
	if st.Problem != "" && (st.Cluster == nil || st.Problem != st.Cluster.Problem) {
		fmt.Fprintf(w, "problem: %s\n", st.Problem)
	}
	if c := st.Cluster; c != nil {
		line := fmt.Sprintf("cluster: this is %s (%s)", c.Node, c.Role)
		if c.Leader != "" {
			line += fmt.Sprintf("; leader %s; replicas alive (%d): %s", c.Leader, len(c.Replicas), strings.Join(c.Replicas, ", "))
		}
		if c.Problem != "" {
			line += "; " + c.Problem
		}
		fmt.Fprintln(w, line)
	}
	if !st.Reload.Successful && !st.Reload.Time.IsZero() {
		fmt.Fprintf(w, "last reload REJECTED at %s: %s\n", clock(st.Reload.Time), st.Reload.Error)
	}

	fmt.Fprintf(w, "\nJOBS (%d)\n", len(st.Jobs))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "JOB\tNEXT FIRE\tLAST FIRE\tOUTCOME\tLAST SUCCESS\tERROR")
	for _, j := range st.Jobs {
		last, outcome, errText := "-", "-", ""
		if j.Last != nil {
			last, outcome, errText = clock(j.Last.Scheduled), j.Last.Outcome, j.Last.Error
			if bad := failedTargets(j.Last); bad != "" {
				outcome += " (" + bad + ")"
			}
		}
		if j.Running {
			outcome = "running"
		}
		next := "-"
		if !j.NextFire.IsZero() {
			next = clock(j.NextFire) + " (in " + roundDur(j.NextFire.Sub(st.Time)) + ")"
		}
		success := "-"
		if !j.LastSuccess.IsZero() {
			success = clock(j.LastSuccess)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", j.Name, next, last, outcome, success, oneLine(errText, 80))
	}
	tw.Flush()

	if len(st.Windows) > 0 {
		fmt.Fprintf(w, "\nWINDOWS (%d)\n", len(st.Windows))
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "WINDOW\tTARGET\tDESIRED\tACTUAL\tOVERRIDE\tNEXT EDGE\tERROR")
		for _, win := range st.Windows {
			next := "-"
			if !win.NextEdge.IsZero() {
				next = clock(win.NextEdge)
			}
			for _, t := range win.Targets {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", win.Name, t.Target, t.Desired, t.Actual,
					dash(t.Override), next, oneLine(t.Error, 60))
			}
		}
		tw.Flush()
	}
	if len(st.Overrides) > 0 {
		fmt.Fprintf(w, "\nOVERRIDES (%d)\n", len(st.Overrides))
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "WINDOW\tTARGET\tSTATE\tUNTIL")
		for _, o := range st.Overrides {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", o.Window, dash(o.Target), o.State, clock(o.Until))
		}
		tw.Flush()
	}
	if len(st.Throttled) > 0 {
		fmt.Fprintf(w, "\nTHROTTLED ACCOUNTS\n")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "ACCOUNT\tTHROTTLED\tLAST")
		for _, t := range st.Throttled {
			fmt.Fprintf(tw, "%s\t%d\t%s\n", t.Account, t.Total, clock(t.Last))
		}
		tw.Flush()
	}
	if len(st.RecentFailures) > 0 {
		fmt.Fprintf(w, "\nRECENT FAILURES (newest first)\n")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "TIME\tJOB\tTARGET\tOUTCOME\tERROR")
		for _, r := range st.RecentFailures {
			msg := r.Error
			if msg == "" {
				msg = r.Detail
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", clock(r.Time), dash(r.Job), dash(r.Target), r.Outcome, oneLine(msg, 80))
		}
		tw.Flush()
	}
}

func failedTargets(r *Run) string {
	var bad []string
	for _, t := range r.Targets {
		if t.Outcome != "" && t.Outcome != "success" && t.Outcome != "retry" {
			bad = append(bad, t.Target)
		}
	}
	if len(bad) == 0 || len(bad) == len(r.Targets) && len(r.Targets) == 1 {
		return ""
	}
	return fmt.Sprintf("%d/%d targets", len(bad), len(r.Targets))
}

func clock(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Local().Format("2006-01-02 15:04:05 MST")
}

func roundDur(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	switch {
	case d < time.Minute:
		return d.Round(time.Second).String()
	case d < 24*time.Hour:
		return d.Round(time.Minute).String()
	}
	return fmt.Sprintf("%dd%s", d/(24*time.Hour), (d % (24 * time.Hour)).Round(time.Hour))
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// oneLine keeps a table row on one line: newlines become spaces and a
// long text is cut with an ellipsis.
func oneLine(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > max {
		return string(r[:max-1]) + "…"
	}
	return s
}
