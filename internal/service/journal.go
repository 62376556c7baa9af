package service

import (
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/rs/zerolog"
)

// Syslog priorities as sd-daemon.h defines them for "<N>" line prefixes.
const (
	prioCrit    = 2
	prioErr     = 3
	prioWarning = 4
	prioInfo    = 6
	prioDebug   = 7
)

// LogWriter returns the writer a logger should use for stderr: a
// JournalWriter when stderr is connected to the journal (see
// IsJournalStream), stderr itself otherwise.
func LogWriter(stderr *os.File) io.Writer {
	if IsJournalStream(stderr) {
		return JournalWriter{W: stderr}
	}
	return stderr
}

// IsJournalStream reports whether f is the stream systemd connected to the
// journal: JOURNAL_STREAM holds "DEVICE:INODE" of that stream, and the rule
// from systemd.exec(5) is to compare it with f's own device and inode, since
// a child process may inherit the variable with a different stderr.
func IsJournalStream(f *os.File) bool {
	js := os.Getenv("JOURNAL_STREAM")
	if js == "" || f == nil {
		return false
	}
	devS, inoS, ok := strings.Cut(js, ":")
	if !ok {
		return false
	}
	dev, err1 := strconv.ParseUint(devS, 10, 64)
	ino, err2 := strconv.ParseUint(inoS, 10, 64)
	if err1 != nil || err2 != nil {
		return false
	}
	fdev, fino, ok := devIno(f)
	return ok && fdev == dev && fino == ino
}

// JournalWriter is a zerolog.LevelWriter for a stream connected to the
// journal: it prefixes each line with the syslog priority of its level,
// "<3>" for error, "<4>" for warn, "<6>" for info and "<7>" for debug and
// trace ("<2>" for fatal and panic), which journald strips and records as
// PRIORITY, so `journalctl -p err` shows failures only.
type JournalWriter struct {
	W io.Writer
}

var _ zerolog.LevelWriter = JournalWriter{}

// Write writes p unchanged; zerolog calls WriteLevel instead.
func (w JournalWriter) Write(p []byte) (int, error) { return w.W.Write(p) }

// WriteLevel writes p, one zerolog line, with the priority prefix of level
// in a single write so that concurrent lines do not interleave. It returns
// len(p) on success.
func (w JournalWriter) WriteLevel(level zerolog.Level, p []byte) (int, error) {
	b := make([]byte, 0, len(p)+3)
	b = append(b, '<', byte('0'+Priority(level)), '>')
	b = append(b, p...)
	n, err := w.W.Write(b)
	n -= 3
	if n < 0 {
		n = 0
	}
	return n, err
}

// Priority returns the syslog priority (0-7) journald records for a line
// logged at level.
func Priority(level zerolog.Level) int {
	switch level {
	case zerolog.TraceLevel, zerolog.DebugLevel:
		return prioDebug
	case zerolog.WarnLevel:
		return prioWarning
	case zerolog.ErrorLevel:
		return prioErr
	case zerolog.FatalLevel, zerolog.PanicLevel:
		return prioCrit
	}
	return prioInfo // info, and lines logged without a level
}
