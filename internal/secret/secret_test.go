package secret

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"gopkg.in/yaml.v3"
)

const canary = "s3cr3t-CANARY-value-42"

func TestValueNeverPrints(t *testing.T) {
	v := New(canary)
	var buf strings.Builder
	fmt.Fprintf(&buf, "%v %+v %#v %s %q %x %X %d %10s %T", v, v, v, v, v, v, v, v, v, v)
	fmt.Fprint(&buf, v, &v, []Value{v}, map[string]Value{"k": v}, struct{ S Value }{v})
	b, err := json.Marshal(struct {
		S Value
		P *Value
	}{v, &v})
	if err != nil {
		t.Fatal(err)
	}
	buf.Write(b)
	log := zerolog.New(&buf)
	log.Info().Interface("v", v).Object("o", v).Stringer("s", v).Msg("x")
	if strings.Contains(buf.String(), canary) {
		t.Fatalf("secret leaked: %s", buf.String())
	}
	if !strings.Contains(buf.String(), Redacted) {
		t.Fatalf("no redaction marker in %s", buf.String())
	}
	if v.Reveal() != canary {
		t.Fatalf("Reveal() = %q", v.Reveal())
	}
}

func TestRefUnmarshal(t *testing.T) {
	tests := []struct {
		name, in string
		want     Ref
		wantErr  string
	}{
		{"env", "k: {env: NCP_SK}", Ref{Env: "NCP_SK"}, ""},
		{"file", "k: {file: /etc/x}", Ref{File: "/etc/x"}, ""},
		{"credential", "k: {credential: ncp_sk}", Ref{Credential: "ncp_sk"}, ""},
		{"inline", "k: " + canary, Ref{}, "inline secrets are not allowed"},
		{"inline list", "k: [" + canary + "]", Ref{}, "inline secrets are not allowed"},
		{"two keys", "k: {env: A, file: B}", Ref{}, "exactly one"},
		{"unknown key", "k: {vault: " + canary + "}", Ref{}, "unknown secret source"},
		{"empty", "k: {env: ''}", Ref{}, "non-empty"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out struct {
				K Ref `yaml:"k"`
			}
			err := yaml.Unmarshal([]byte(tc.in), &out)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Unmarshal(%q) error = %v; want %q", tc.in, err, tc.wantErr)
				}
				if strings.Contains(err.Error(), canary) {
					t.Fatalf("error quotes the secret: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			out.K.Line, out.K.Column = 0, 0
			if out.K != tc.want {
				t.Fatalf("got %+v; want %+v", out.K, tc.want)
			}
		})
	}
}

func TestResolve(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	loose := filepath.Join(dir, "loose")
	if err := os.WriteFile(good, []byte(canary+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(loose, []byte(canary), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(loose, 0o644) // umask may have narrowed it
	creds := t.TempDir()
	if err := os.WriteFile(filepath.Join(creds, "ncp_sk"), []byte(canary), 0o400); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"SET": canary}
	res := Resolver{LookupEnv: func(k string) (string, bool) { v, ok := env[k]; return v, ok }, CredDir: creds}
	tests := []struct {
		name    string
		ref     Ref
		wantErr string
	}{
		{"env", Ref{Env: "SET"}, ""},
		{"env missing", Ref{Env: "UNSET"}, "environment variable UNSET is not set"},
		{"file", Ref{File: good}, ""},
		{"file loose", Ref{File: loose}, "chmod 600 " + loose},
		{"file missing", Ref{File: filepath.Join(dir, "nope")}, "no such file"},
		{"credential", Ref{Credential: "ncp_sk"}, ""},
		{"credential missing", Ref{Credential: "other"}, "LoadCredential=other"},
		{"empty", Ref{}, "empty secret reference"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := res.Resolve(tc.ref)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("Resolve(%v) error = %v; want %q", tc.ref, err, tc.wantErr)
				}
				if strings.Contains(err.Error(), canary) {
					t.Fatalf("error quotes the secret: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if v.Reveal() != canary {
				t.Fatalf("Resolve(%v) = %q; want the canary", tc.ref, v.Reveal())
			}
		})
	}
}

func TestResolveCredentialWithoutDirectory(t *testing.T) {
	res := Resolver{LookupEnv: func(string) (string, bool) { return "", false }}
	_, err := res.Resolve(Ref{Credential: "x"})
	if err == nil || !strings.Contains(err.Error(), "CREDENTIALS_DIRECTORY") {
		t.Fatalf("err = %v", err)
	}
}

// fakeInfo lets the permission check be tested without depending on umask.
type fakeInfo struct{ mode fs.FileMode }

func (f fakeInfo) Name() string       { return "f" }
func (f fakeInfo) Size() int64        { return 1 }
func (f fakeInfo) Mode() fs.FileMode  { return f.mode }
func (f fakeInfo) ModTime() time.Time { return time.Time{} }
func (f fakeInfo) IsDir() bool        { return false }
func (f fakeInfo) Sys() any           { return nil }

func TestResolveFileModes(t *testing.T) {
	for _, mode := range []fs.FileMode{0o600, 0o400, 0o640, 0o604, 0o660} {
		res := Resolver{
			Stat:     func(string) (os.FileInfo, error) { return fakeInfo{mode}, nil },
			ReadFile: func(string) ([]byte, error) { return []byte(canary), nil },
		}
		_, err := res.Resolve(Ref{File: "/x"})
		wantOK := mode&0o077 == 0
		if (err == nil) != wantOK {
			t.Errorf("mode %04o: err = %v; want ok=%v", mode, err, wantOK)
		}
	}
}
