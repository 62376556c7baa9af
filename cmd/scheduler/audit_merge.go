package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/cloudcron/scheduler/internal/audit"
)

// mergedRecord is one record of one replica's log, with its raw line.
type mergedRecord struct {
	r    audit.Record
	log  int // index of the log in the arguments
	line []byte
}

// cmdAuditMerge verifies the audit logs of several replicas, each its own
// hash chain, and prints their records as one timeline.
func (e env) cmdAuditMerge(args []string) int {
	fs, _, _ := e.flags("audit merge", "audit merge [--json] [--job NAME] LOG LOG...\n\n"+
		"The replicas of a cluster each keep their own audit log. Checks the hash chain of each\n"+
		"(as audit verify does) and prints the records of all of them as one timeline, oldest\n"+
		"first, with the node that wrote each. Exits 1 if any chain fails; the timeline still\n"+
		"shows the records before the first problem of each log.")
	asJSON := fs.Bool("json", false, "print the lines as they are in the logs (JSON Lines), merged")
	job := fs.String("job", "", "only records of this job")
	logs, err := parse(fs, args)
	if err != nil {
		return parseErr(err)
	}
	if len(logs) == 0 {
		fmt.Fprintln(e.stderr, "scheduler audit merge: name the replicas' audit logs, e.g. scheduler audit merge host-a.jsonl host-b.jsonl host-c.jsonl")
		return exitUsage
	}
	code := exitOK
	var all []mergedRecord
	for i, path := range logs {
		rep, verr := audit.Verify(path)
		var ce *audit.CorruptError
		switch {
		case errors.As(verr, &ce):
			fmt.Fprintf(e.stderr, "%s: FAILED: %s (%s, line %d, seq %d); %d good records before it\n", path, ce.Msg, ce.File, ce.Line, ce.Seq, rep.Records)
			code = exitFailed
		case verr != nil:
			printErr(e.stderr, verr)
			code = exitFailed
			continue
		default:
			fmt.Fprintf(e.stderr, "%s: ok: %s, seq %d..%d\n", path, plural(int(rep.Records), "record"), rep.FirstSeq, rep.LastSeq)
		}
		files, err := audit.Files(path)
		if err != nil {
			printErr(e.stderr, err)
			code = exitFailed
			continue
		}
		for _, file := range files {
			err := eachLine(file, func(no int, line []byte) {
				var r audit.Record
				if json.Unmarshal(line, &r) != nil || (ce != nil && r.Seq >= ce.Seq && ce.Seq > 0) {
					return // verify reported it
				}
				if *job == "" || r.Job == *job {
					all = append(all, mergedRecord{r: r, log: i, line: append([]byte(nil), line...)})
				}
			})
			if err != nil {
				printErr(e.stderr, err)
				code = exitFailed
			}
		}
	}
	// One timeline: by time; records of the same instant keep each log's
	// order (seq), logs in argument order.
	sort.SliceStable(all, func(a, b int) bool {
		ra, rb := all[a], all[b]
		if !ra.r.Time.Equal(rb.r.Time) {
			return ra.r.Time.Before(rb.r.Time)
		}
		if ra.log != rb.log {
			return ra.log < rb.log
		}
		return ra.r.Seq < rb.r.Seq
	})
	if *asJSON {
		for _, m := range all {
			e.stdout.Write(m.line)
			e.stdout.Write([]byte{'\n'})
		}
		return code
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TIME\tNODE\tJOB\tEVENT\tTARGET\tATTEMPT\tOUTCOME\tHTTP\tERROR")
	for _, m := range all {
		r := m.r
		node := r.Node
		if node == "" {
			node = "(" + strings.TrimSuffix(baseName(logs[m.log]), ".jsonl") + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			r.Time.UTC().Format("2006-01-02 15:04:05.000Z"), node, dash(r.Job), r.Event, dash(r.Target),
			num(r.Attempt), dash(r.Outcome), num(r.HTTPStatus), cell(r.Error, maxErrorWidth))
	}
	tw.Flush()
	return code
}

func baseName(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[i+1:]
	}
	return p
}
