package secret

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"gopkg.in/yaml.v3"
)

// envNameRe is what an environment variable name written in a schedule
// may look like (POSIX portable names).
var envNameRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Ref names where a secret comes from: exactly one of Env, File or
// Credential is set. It never holds the secret itself.
type Ref struct {
	Env        string // environment variable name
	File       string // path of a file readable by the owner only
	Credential string // name under $CREDENTIALS_DIRECTORY (systemd LoadCredential=)

	Line, Column int // position in the schedule file, for error messages
}

// RefError is a problem with a secret reference. It never contains the
// node's scalar value, which may be an inline secret.
type RefError struct {
	Line, Column int
	Msg          string
}

func (e *RefError) Error() string { return e.Msg }

// InlineHint is the fix printed for an inline secret.
const InlineHint = "inline secrets are not allowed; use {env: NAME}, {file: PATH} or {credential: NAME}"

// UnmarshalYAML accepts {env: NAME}, {file: PATH} or {credential: NAME}. It
// walks the node itself (so no decoder error can quote a secret) and never
// copies a scalar value of the wrong shape into an error.
func (r *Ref) UnmarshalYAML(n *yaml.Node) error {
	r.Line, r.Column = n.Line, n.Column
	if n.Kind != yaml.MappingNode {
		return &RefError{Line: n.Line, Column: n.Column, Msg: InlineHint}
	}
	if len(n.Content) != 2 {
		return &RefError{Line: n.Line, Column: n.Column,
			Msg: "a secret reference takes exactly one of env, file or credential"}
	}
	k, v := n.Content[0], n.Content[1]
	if v.Kind != yaml.ScalarNode || v.Value == "" {
		return &RefError{Line: v.Line, Column: v.Column,
			Msg: fmt.Sprintf("%s: want a non-empty name", k.Value)}
	}
	switch k.Value {
	case "env":
		if !envNameRe.MatchString(v.Value) {
			// Most likely the secret itself, pasted where its variable's
			// name goes: never echo it.
			return &RefError{Line: v.Line, Column: v.Column,
				Msg: "env: not an environment variable name (letters, digits and _, not starting with a digit); it may be the secret itself, so it is not shown: put the value in the environment and name the variable here"}
		}
		r.Env = v.Value
	case "file":
		r.File = v.Value
	case "credential":
		r.Credential = v.Value
	default:
		return &RefError{Line: k.Line, Column: k.Column,
			Msg: fmt.Sprintf("unknown secret source %q; use env, file or credential", k.Value)}
	}
	return nil
}

// String describes the reference (never the secret), e.g. "env NCP_SK".
func (r Ref) String() string {
	switch {
	case r.Env != "":
		return "env " + r.Env
	case r.File != "":
		return "file " + r.File
	case r.Credential != "":
		return "credential " + r.Credential
	}
	return "empty secret reference"
}

// Resolver reads secrets. Its fields default to the process environment.
type Resolver struct {
	LookupEnv func(string) (string, bool)  // default os.LookupEnv
	ReadFile  func(string) ([]byte, error) // default os.ReadFile
	Stat      func(string) (os.FileInfo, error)
	CredDir   string // default $CREDENTIALS_DIRECTORY
}

// Resolve returns the secret r names. Errors name the source and the fix,
// never the content. A file secret readable by group or others is refused,
// as ssh and libpq do. Trailing newlines of file and credential secrets are
// trimmed.
func (res Resolver) Resolve(r Ref) (Value, error) {
	lookup := res.LookupEnv
	if lookup == nil {
		lookup = os.LookupEnv
	}
	read := res.ReadFile
	if read == nil {
		read = os.ReadFile
	}
	stat := res.Stat
	if stat == nil {
		stat = os.Stat
	}
	switch {
	case r.Env != "":
		v, ok := lookup(r.Env)
		if !ok {
			return Value{}, fmt.Errorf("environment variable %s is not set; export it or use {file: PATH} or {credential: NAME}", r.Env)
		}
		if v == "" {
			return Value{}, fmt.Errorf("environment variable %s is set but empty; give it the secret's value", r.Env)
		}
		return New(v), nil
	case r.File != "":
		fi, err := stat(r.File)
		if err != nil {
			return Value{}, fmt.Errorf("secret file %s: %w", r.File, unwrapPathErr(err))
		}
		if fi.Mode().Perm()&0o077 != 0 {
			return Value{}, fmt.Errorf("secret file %s is readable by group or others (mode %04o); run: chmod 600 %s", r.File, fi.Mode().Perm(), r.File)
		}
		b, err := read(r.File)
		if err != nil {
			return Value{}, fmt.Errorf("secret file %s: %w", r.File, unwrapPathErr(err))
		}
		return nonEmpty(b, "secret file "+r.File)
	case r.Credential != "":
		dir := res.CredDir
		if dir == "" {
			dir, _ = lookup("CREDENTIALS_DIRECTORY")
		}
		if dir == "" {
			return Value{}, fmt.Errorf("credential %s: $CREDENTIALS_DIRECTORY is not set; run under systemd with LoadCredential=%s:PATH or use {file: PATH}", r.Credential, r.Credential)
		}
		if strings.ContainsRune(r.Credential, '/') {
			return Value{}, fmt.Errorf("credential %s: a credential name cannot contain '/'", r.Credential)
		}
		b, err := read(filepath.Join(dir, r.Credential))
		if err != nil {
			return Value{}, fmt.Errorf("credential %s: %w; add LoadCredential=%s:PATH to the unit", r.Credential, unwrapPathErr(err), r.Credential)
		}
		return nonEmpty(b, "credential "+r.Credential)
	}
	return Value{}, fmt.Errorf("empty secret reference; use {env: NAME}, {file: PATH} or {credential: NAME}")
}

func nonEmpty(b []byte, what string) (Value, error) {
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		return Value{}, fmt.Errorf("%s is empty", what)
	}
	return New(s), nil
}

// unwrapPathErr drops the *PathError's repetition of the path.
func unwrapPathErr(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}
