package service

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/rs/zerolog"
)

func TestJournalWriterPrefixesEachLevel(t *testing.T) {
	var buf bytes.Buffer
	log := zerolog.New(JournalWriter{W: &buf}).Level(zerolog.TraceLevel)
	log.Trace().Msg("t")
	log.Debug().Msg("d")
	log.Info().Msg("i")
	log.Warn().Msg("w")
	log.Error().Err(errors.New("boom")).Msg("e")
	log.WithLevel(zerolog.FatalLevel).Msg("f") // WithLevel does not exit
	log.Log().Msg("n")
	want := []string{
		`<7>{"level":"trace","message":"t"}`,
		`<7>{"level":"debug","message":"d"}`,
		`<6>{"level":"info","message":"i"}`,
		`<4>{"level":"warn","message":"w"}`,
		`<3>{"level":"error","error":"boom","message":"e"}`,
		`<2>{"level":"fatal","message":"f"}`,
		`<6>{"message":"n"}`,
	}
	got := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(got) != len(want) {
		t.Fatalf("got %d lines:\n%s", len(got), buf.String())
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("line %d = %s; want %s", i, got[i], want[i])
		}
	}
}

type shortWriter struct{ n int }

func (w shortWriter) Write(p []byte) (int, error) { return w.n, errors.New("disk full") }

func TestJournalWriterCountsPayloadBytes(t *testing.T) {
	line := []byte(`{"level":"info"}` + "\n")
	n, err := JournalWriter{W: &bytes.Buffer{}}.WriteLevel(zerolog.InfoLevel, line)
	if err != nil || n != len(line) {
		t.Fatalf("WriteLevel = %d, %v; want %d, nil", n, err, len(line))
	}
	for _, short := range []int{0, 2, 10} {
		n, err := JournalWriter{W: shortWriter{short}}.WriteLevel(zerolog.InfoLevel, line)
		if err == nil || n < 0 || n > len(line) {
			t.Fatalf("short write of %d: WriteLevel = %d, %v", short, n, err)
		}
	}
}

func TestLogWriterFollowsJournalStream(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "stderr"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	other, err := os.Create(filepath.Join(t.TempDir(), "other"))
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	match := fmt.Sprintf("%d:%d", st.Dev, st.Ino)
	tests := []struct {
		name, stream string
		file         *os.File
		journal      bool
	}{
		{"matching device and inode", match, f, true},
		{"unset", "", f, false},
		{"inherited by a process with another stderr", match, other, false},
		{"wrong inode", fmt.Sprintf("%d:%d", st.Dev, st.Ino+1), f, false},
		{"garbage", "journal", f, false},
		{"nil file", match, nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("JOURNAL_STREAM", tc.stream)
			if got := IsJournalStream(tc.file); got != tc.journal {
				t.Fatalf("IsJournalStream = %v; want %v", got, tc.journal)
			}
			if tc.file == nil {
				return
			}
			w := LogWriter(tc.file)
			if _, isJournal := w.(JournalWriter); isJournal != tc.journal {
				t.Fatalf("LogWriter returned %T", w)
			}
		})
	}

	// End to end: a logger on the journal's stderr writes prefixed lines.
	t.Setenv("JOURNAL_STREAM", match)
	log := zerolog.New(LogWriter(f))
	log.Error().Msg("fire failed")
	b, err := os.ReadFile(f.Name())
	if err != nil {
		t.Fatal(err)
	}
	if want := `<3>{"level":"error","message":"fire failed"}` + "\n"; string(b) != want {
		t.Fatalf("file holds %q; want %q", b, want)
	}
}
