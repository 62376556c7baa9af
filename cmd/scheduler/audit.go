package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cloudcron/scheduler/internal/audit"
	"github.com/cloudcron/scheduler/internal/schedule"
	"github.com/cloudcron/scheduler/internal/state"
)

// auditOutcomes are the values --outcome accepts.
var auditOutcomes = []string{
	audit.OutcomeSuccess, audit.OutcomeRetry, audit.OutcomeFailure, audit.OutcomeSkipped,
	audit.OutcomeMissed, audit.OutcomeUnknown, audit.OutcomeVerified, audit.OutcomeVerifyFailed,
	audit.OutcomeUnverified,
}

// maxErrorWidth is where the table cuts the error column.
const maxErrorWidth = 60

// auditPathFlags adds --path to fs and returns a function that resolves
// the log's path from --path or the config's audit.path.
func (e env) auditPathFlags(fs *flag.FlagSet, cfg *string) func() (string, string, int) {
	path := fs.String("path", "", "the audit log file (default: audit.path of the --config schedule)")
	return func() (string, string, int) {
		cfgSet := false
		fs.Visit(func(f *flag.Flag) { cfgSet = cfgSet || f.Name == "config" })
		if *path != "" {
			if cfgSet {
				fmt.Fprintf(e.stderr, "scheduler %s: give --config or --path, not both\n", fs.Name())
				return "", "", exitUsage
			}
			return *path, "", exitOK
		}
		c, err := schedule.LoadFile(*cfg, schedule.Options{})
		if err != nil {
			printErr(e.stderr, err)
			fmt.Fprintf(e.stderr, "scheduler %s: cannot read audit.path from %s; give the log with --path\n", fs.Name(), *cfg)
			return "", "", exitFailed
		}
		return c.Audit.Path, c.State.Dir, exitOK
	}
}

func (e env) cmdAudit(args []string) int {
	if len(args) > 0 && args[0] == "verify" {
		return e.cmdAuditVerify(args[1:])
	}
	if len(args) > 0 && args[0] == "repair" {
		return e.cmdAuditRepair(args[1:])
	}
	if len(args) > 0 && args[0] == "merge" {
		return e.cmdAuditMerge(args[1:])
	}
	fs, cfg, _ := e.flags("audit", "audit [--config PATH | --path P] [--job NAME] [--since RFC3339|DURATION] [--outcome O] [--json]\n       scheduler audit verify [--config PATH | --path P]\n       scheduler audit repair --config PATH [--reason TEXT]\n       scheduler audit merge [--json] [--job NAME] LOG LOG...\n\nLists audit records, oldest first, from the rotated files and the live file.")
	logPath := e.auditPathFlags(fs, cfg)
	job := fs.String("job", "", "only records of this job")
	since := fs.String("since", "", "only records at or after this time: RFC3339, or a duration back from now such as 24h, 90m or 7d")
	outcome := fs.String("outcome", "", "only records with this outcome: "+strings.Join(auditOutcomes, ", "))
	asJSON := fs.Bool("json", false, "print the matching lines as they are in the log (JSON Lines)")
	pos, err := parse(fs, args)
	if err != nil {
		return parseErr(err)
	}
	if len(pos) > 0 {
		fmt.Fprintf(e.stderr, "scheduler audit: unexpected argument %q (scheduler audit verify takes its flags after verify)\n", pos[0])
		return exitUsage
	}
	var from time.Time
	if *since != "" {
		t, err := parseSince(*since, time.Now())
		if err != nil {
			fmt.Fprintf(e.stderr, "scheduler audit: --since %q: want RFC3339 such as 2026-03-29T00:00:00+01:00 or a duration such as 24h or 7d\n", *since)
			return exitUsage
		}
		from = t
	}
	if *outcome != "" && !slices.Contains(auditOutcomes, *outcome) {
		fmt.Fprintf(e.stderr, "scheduler audit: --outcome %q: use one of %s\n", *outcome, strings.Join(auditOutcomes, ", "))
		return exitUsage
	}
	path, _, code := logPath()
	if code != exitOK {
		return code
	}
	files, err := audit.Files(path)
	if err != nil {
		printErr(e.stderr, err)
		return exitFailed
	}
	if len(files) == 0 {
		fmt.Fprintf(e.stderr, "scheduler audit: no audit log at %s\n", path)
		return exitFailed
	}

	match := func(r audit.Record) bool {
		return (*job == "" || r.Job == *job) &&
			(*outcome == "" || r.Outcome == *outcome) &&
			(from.IsZero() || !r.Time.Before(from))
	}
	var tw *tabwriter.Writer
	if !*asJSON {
		tw = tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "TIME\tJOB\tEVENT\tTARGET\tATTEMPT\tOUTCOME\tHTTP\tCODE\tERROR")
	}
	bad := 0
	for _, file := range files {
		err := eachLine(file, func(no int, line []byte) {
			var r audit.Record
			if err := json.Unmarshal(line, &r); err != nil {
				bad++
				fmt.Fprintf(e.stderr, "scheduler audit: %s: line %d: not a record: %v\n", file, no, err)
				return
			}
			if !match(r) {
				return
			}
			if *asJSON {
				e.stdout.Write(line)
				e.stdout.Write([]byte{'\n'})
				return
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
				r.Time.UTC().Format("2006-01-02 15:04:05Z"), dash(r.Job), r.Event, dash(r.Target),
				num(r.Attempt), dash(r.Outcome), num(r.HTTPStatus), dash(r.VendorCode), cell(r.Error, maxErrorWidth))
		})
		if err != nil {
			if tw != nil {
				tw.Flush()
			}
			printErr(e.stderr, err)
			return exitFailed
		}
	}
	if tw != nil {
		tw.Flush()
	}
	if bad > 0 {
		fmt.Fprintf(e.stderr, "scheduler audit: %d damaged line(s) skipped; run 'scheduler audit verify' for details\n", bad)
		return exitFailed
	}
	return exitOK
}

// tornRechecks is how many times verify reads the live log again, after
// tornPause, when it ends in an incomplete line.
const tornRechecks = 3

// tornPause waits for a write in progress to end; tests replace it.
var tornPause = func() { time.Sleep(100 * time.Millisecond) }

// tornLive reports whether err is an incomplete last line of the live
// file path.
func tornLive(err error, path string) bool {
	var ce *audit.CorruptError
	return errors.As(err, &ce) && ce.Kind == audit.KindTorn && ce.File == path
}

func (e env) cmdAuditVerify(args []string) int {
	fs, cfg, _ := e.flags("audit verify", "audit verify [--config PATH | --path P]\n\nChecks the hash chain of the audit log across its rotated files; exits 1 at the first problem.")
	logPath := e.auditPathFlags(fs, cfg)
	pos, err := parse(fs, args)
	if err != nil {
		return parseErr(err)
	}
	if len(pos) > 0 {
		fmt.Fprintf(e.stderr, "scheduler audit verify: unexpected argument %q\n", pos[0])
		return exitUsage
	}
	path, stateDir, code := logPath()
	if code != exitOK {
		return code
	}
	rep, err := audit.Verify(path)
	// A running daemon may be writing the live file's last line as it is
	// read (a reader can see part of a write): an incomplete last line is
	// read again before it is called torn. One left by a crash stays.
	for i := 0; i < tornRechecks && tornLive(err, path); i++ {
		tornPause()
		rep, err = audit.Verify(path)
	}
	if err == nil && stateDir != "" {
		// Records cut from the end leave a valid chain: the run state
		// remembers how far the log went.
		seq, _, serr := state.ReadAuditTail(stateDir)
		switch {
		case serr != nil:
			fmt.Fprintf(e.stderr, "scheduler audit verify: cannot read the run state's audit tail: %v\n", serr)
		case seq > rep.LastSeq:
			fmt.Fprintf(e.stdout, "FAILED: audit log ends at seq %d but the run state recorded seq %d: records were deleted from the end\n", rep.LastSeq, seq)
			fmt.Fprintf(e.stdout, "  at: %s\n", path)
			return exitFailed
		}
	}
	var ce *audit.CorruptError
	switch {
	case errors.As(err, &ce):
		fmt.Fprintf(e.stdout, "FAILED: %s\n", ce.Msg)
		where := fmt.Sprintf("  at: %s", ce.File)
		if ce.Line > 0 {
			where += fmt.Sprintf(", line %d, byte offset %d", ce.Line, ce.Offset)
		}
		if ce.Seq > 0 {
			where += fmt.Sprintf(", seq %d", ce.Seq)
		}
		fmt.Fprintln(e.stdout, where)
		if rep.Records > 0 {
			fmt.Fprintf(e.stdout, "  before it: %d good records, seq %d..%d, last hash %s\n", rep.Records, rep.FirstSeq, rep.LastSeq, rep.LastHash)
		}
		return exitFailed
	case err != nil:
		printErr(e.stderr, err)
		return exitFailed
	}
	if rep.Records == 0 {
		fmt.Fprintf(e.stdout, "ok: 0 records in %s\n", plural(len(rep.Files), "file"))
		return exitOK
	}
	fmt.Fprintf(e.stdout, "ok: %s in %s, seq %d..%d, last hash %s\n", plural(int(rep.Records), "record"), plural(len(rep.Files), "file"), rep.FirstSeq, rep.LastSeq, rep.LastHash)
	for _, seq := range rep.Segments {
		fmt.Fprintf(e.stdout, "  note: a new chain segment starts at seq %d (scheduler audit repair); its record says what the old segment lost\n", seq)
	}
	return exitOK
}

func (e env) cmdAuditRepair(args []string) int {
	fs, cfg, _ := e.flags("audit repair", "audit repair --config PATH [--reason TEXT]\n\nThe way out when the daemon refuses to start because the audit log's end does not match\nthe run state (records cut from the end, a torn last record, a rewritten tail). Keeps every\nbyte: complete lines stay, an incomplete last line moves to a side file; then starts a new\nchain segment whose first record names the old segment's end and what the run state expected,\nand records it as the run state's new tail. Refused while a daemon runs.")
	reason := fs.String("reason", "", "why, for the record (default: who ran it, and where)")
	pos, err := parse(fs, args)
	if err != nil {
		return parseErr(err)
	}
	if len(pos) > 0 {
		fmt.Fprintf(e.stderr, "scheduler audit repair: unexpected argument %q\n", pos[0])
		return exitUsage
	}
	c, err := schedule.LoadFile(*cfg, schedule.Options{})
	if err != nil {
		printErr(e.stderr, err)
		return exitFailed
	}
	if *reason == "" {
		host, _ := os.Hostname()
		*reason = fmt.Sprintf("scheduler audit repair run by uid %d on %s", os.Getuid(), host)
	}
	store, err := state.Open(c.State.Dir)
	if err != nil {
		fmt.Fprintf(e.stderr, "scheduler audit repair: %v\n", err)
		return exitFailed
	}
	defer store.Close()
	seq, hash := store.AuditTail()
	rp, err := audit.Repair(c.Audit.Path, audit.Options{ExpectSeq: seq, ExpectHash: hash}, *reason)
	if errors.Is(err, audit.ErrNothingToRepair) {
		fmt.Fprintln(e.stdout, err)
		return exitOK
	}
	if err != nil {
		fmt.Fprintf(e.stderr, "scheduler audit repair: %v\n", err)
		return exitFailed
	}
	if err := store.SetAuditTail(rp.Record.Seq, rp.Record.Hash); err != nil {
		fmt.Fprintf(e.stderr, "scheduler audit repair: the log was repaired (seq %d) but the run state did not take its new tail: %v; run it again\n", rp.Record.Seq, err)
		return exitFailed
	}
	fmt.Fprintf(e.stdout, "repaired %s: new chain segment %s starts at seq %d\n", c.Audit.Path, rp.Record.LogID, rp.Record.Seq)
	if rp.Side != "" {
		fmt.Fprintf(e.stdout, "  the incomplete last line is kept in %s\n", rp.Side)
	}
	fmt.Fprintf(e.stdout, "  %s\n", rp.Record.Detail)
	return exitOK
}

// parseSince reads --since: an RFC 3339 time, or a duration before now
// ("24h", "90m", or whole days such as "7d").
func parseSince(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n < 0 {
			return time.Time{}, fmt.Errorf("bad day count %q", s)
		}
		return now.AddDate(0, 0, -n), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return time.Time{}, fmt.Errorf("not a time or duration: %q", s)
	}
	return now.Add(-d), nil
}

// eachLine calls fn with every non-empty line of file, without its newline.
func eachLine(file string, fn func(no int, line []byte)) error {
	f, err := os.Open(file)
	if err != nil {
		return fmt.Errorf("scheduler audit: %w", err)
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 256<<10)
	for no := 1; ; no++ {
		line, err := br.ReadBytes('\n')
		if line = bytes.TrimSuffix(line, []byte{'\n'}); len(line) > 0 {
			fn(no, line)
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("scheduler audit: read %s: %w", file, err)
		}
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return cell(s, 1<<20)
}

func num(n int) string {
	if n == 0 {
		return "-"
	}
	return strconv.Itoa(n)
}

// cell makes s fit one table cell: no tabs or line breaks, at most width
// runes.
func cell(s string, width int) string {
	if s == "" {
		return "-"
	}
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > width {
		s = string(r[:width-1]) + "…"
	}
	return s
}
