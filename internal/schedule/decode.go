package schedule

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cloudcron/scheduler/internal/secret"
	"gopkg.in/yaml.v3"
)

// maxNodes bounds the nodes the walker visits, aliases expanded, so that an
// alias bomb costs an error rather than memory.
const maxNodes = 1 << 16

const durationHint = "use Go syntax like 30s, 5m, 1h30m"

var (
	refType      = reflect.TypeFor[secret.Ref]()
	durationType = reflect.TypeFor[Duration]()
	yamlLineRe   = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)
)

// parseDoc reads exactly one YAML document and returns its root node.
func parseDoc(file string, data []byte) (*yaml.Node, *FieldError) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &FieldError{File: file, Line: 1, Col: 1, Msg: "empty schedule; a schedule starts with version: 1"}
		}
		return nil, syntaxError(file, err)
	}
	if len(doc.Content) == 0 || isNull(doc.Content[0]) {
		return nil, &FieldError{File: file, Line: max(doc.Line, 1), Col: max(doc.Column, 1), Msg: "empty schedule; a schedule starts with version: 1"}
	}
	root := doc.Content[0]
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, syntaxError(file, err)
	default:
		n := &next
		if len(next.Content) > 0 {
			n = next.Content[0]
		}
		return nil, &FieldError{File: file, Line: n.Line, Col: n.Column,
			Msg: "a second YAML document is not allowed; a schedule is one document (remove the extra ---)"}
	}
	if root.Kind != yaml.MappingNode {
		return nil, &FieldError{File: file, Line: root.Line, Col: root.Column,
			Msg: "expected a mapping (version, timezone, audit, state, defaults, accounts, jobs), got " + describe(root)}
	}
	return root, nil
}

// syntaxError turns a yaml.v3 parse error, which has a line but no column,
// into a FieldError.
func syntaxError(file string, err error) *FieldError {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	fe := &FieldError{File: file, Msg: "invalid YAML: " + msg}
	if m := yamlLineRe.FindStringSubmatch(err.Error()); m != nil {
		fe.Line, _ = strconv.Atoi(m[1])
		fe.Msg = "invalid YAML: " + m[2]
	}
	return fe
}

// walker checks a node tree against the Go types of the schedule before
// anything is decoded: unknown and duplicate fields, wrong kinds, values
// that do not parse, secret references. It reports every problem with its
// position and field path, records the node of every path for the
// semantic checks, and builds a clean copy of the tree without the
// offending nodes so that decoding can go on and later checks still run.
type walker struct {
	file  string
	probs Problems
	vals  map[string]*yaml.Node // path → value node (the alias, not its target)
	keys  map[string]*yaml.Node // path → key node
	typos map[string]bool       // paths of fields an unknown field was probably meant to be
	steps int
}

func newWalker(file string) *walker {
	return &walker{file: file, vals: map[string]*yaml.Node{}, keys: map[string]*yaml.Node{}, typos: map[string]bool{}}
}

func (w *walker) add(n *yaml.Node, path, format string, args ...any) {
	w.probs = append(w.probs, &FieldError{File: w.file, Path: path, Line: n.Line, Col: n.Column, Msg: fmt.Sprintf(format, args...)})
}

func child(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func index(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// describe names what a node is, never its value (it may be a secret).
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		if n.Alias != nil {
			return describe(n.Alias)
		}
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!str":
			return "a string"
		case "!!int":
			return "an integer"
		case "!!float":
			return "a number"
		case "!!bool":
			return "a boolean"
		case "!!null":
			return "nothing"
		case "!!timestamp":
			return "a timestamp"
		}
		return "a value tagged " + n.ShortTag()
	}
	return "something else"
}

// walk checks n against type t at path and returns a clean copy, or nil
// when n cannot be decoded into t.
func (w *walker) walk(n *yaml.Node, t reflect.Type, path string) *yaml.Node {
	w.steps++
	if w.steps > maxNodes {
		if w.steps == maxNodes+1 {
			w.add(n, path, "document too large (more than %d nodes with aliases expanded)", maxNodes)
		}
		return nil
	}
	w.vals[path] = n
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			w.add(n, path, "alias to nothing")
			return nil
		}
		target := n.Alias
		if target.Kind == yaml.AliasNode {
			w.add(n, path, "alias to an alias is not supported")
			return nil
		}
		c := w.walk(target, t, path)
		w.vals[path] = n
		return c
	}
	if t.Kind() == reflect.Pointer {
		if isNull(n) {
			return n
		}
		t = t.Elem()
	}
	switch {
	case t == refType:
		var r secret.Ref
		if err := r.UnmarshalYAML(n); err != nil {
			var re *secret.RefError
			if errors.As(err, &re) {
				w.probs = append(w.probs, &FieldError{File: w.file, Path: path, Line: re.Line, Col: re.Column, Msg: re.Msg})
			} else {
				w.add(n, path, "invalid secret reference; %s", secret.InlineHint)
			}
			return nil
		}
		return n
	case t == durationType:
		if n.Kind != yaml.ScalarNode || isNull(n) {
			w.add(n, path, "expected a duration, got %s; %s", describe(n), durationHint)
			return nil
		}
		if _, err := time.ParseDuration(n.Value); err != nil {
			if _, nerr := strconv.ParseFloat(n.Value, 64); nerr == nil {
				w.add(n, path, "invalid duration %q: a number needs a unit; %s", n.Value, durationHint)
			} else {
				w.add(n, path, "invalid duration %q; %s", n.Value, durationHint)
			}
			return nil
		}
		return n
	}
	switch t.Kind() {
	case reflect.Struct:
		return w.walkStruct(n, t, path)
	case reflect.Map:
		return w.walkMap(n, t, path)
	case reflect.Slice:
		return w.walkSlice(n, t, path)
	case reflect.String:
		return w.scalar(n, path, new(string), "a string")
	case reflect.Int:
		return w.scalar(n, path, new(int), "an integer")
	case reflect.Float64:
		return w.scalar(n, path, new(float64), "a number")
	case reflect.Bool:
		return w.scalar(n, path, new(bool), "true or false")
	}
	panic("schedule: walker does not handle " + t.String()) // a field type was added to types.go without a walker case
}

func (w *walker) scalar(n *yaml.Node, path string, v any, want string) *yaml.Node {
	if n.Kind != yaml.ScalarNode || n.Decode(v) != nil {
		w.add(n, path, "expected %s, got %s", want, describe(n))
		return nil
	}
	return n
}

// fieldsOf maps the yaml names of t's fields, inline structs flattened, to
// their types, and lists them in declaration order.
func fieldsOf(t reflect.Type) (map[string]reflect.Type, []string) {
	types := map[string]reflect.Type{}
	var names []string
	for f := range t.Fields() {
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if tag == "-" || !f.IsExported() {
			continue
		}
		if opts == "inline" {
			sub, subNames := fieldsOf(f.Type)
			for _, n := range subNames {
				types[n] = sub[n]
			}
			names = append(names, subNames...)
			continue
		}
		if name == "" {
			name = strings.ToLower(f.Name)
		}
		types[name] = f.Type
		names = append(names, name)
	}
	return types, names
}

// key checks a mapping key node and returns its name.
func (w *walker) key(k *yaml.Node, path string) (string, bool) {
	if k.Kind == yaml.AliasNode && k.Alias != nil {
		k = k.Alias
	}
	if k.Kind != yaml.ScalarNode {
		w.add(k, path, "expected a name as key, got %s", describe(k))
		return "", false
	}
	if k.ShortTag() == "!!merge" {
		w.add(k, path, "merge keys (<<) are not supported; write the fields out")
		return "", false
	}
	if k.Value == "" || isNull(k) {
		w.add(k, path, "empty key")
		return "", false
	}
	return k.Value, true
}

func (w *walker) walkStruct(n *yaml.Node, t reflect.Type, path string) *yaml.Node {
	if n.Kind != yaml.MappingNode {
		w.add(n, path, "expected a mapping, got %s", describe(n))
		return nil
	}
	types, names := fieldsOf(t)
	c := *n
	c.Content = nil
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		name, ok := w.key(k, path)
		if !ok {
			continue
		}
		p := child(path, name)
		if first, dup := seen[name]; dup {
			w.add(k, p, "duplicate field %q; first set at line %d", name, first.Line)
			continue
		}
		seen[name] = k
		ft, known := types[name]
		if !known {
			w.add(k, p, "unknown field %q; %s", name, hint(name, names))
			if c := closest(name, names); c != "" {
				w.typos[child(path, c)] = true
			}
			continue
		}
		w.keys[p] = k
		if cv := w.walk(v, ft, p); cv != nil {
			c.Content = append(c.Content, k, cv)
		}
	}
	return &c
}

func (w *walker) walkMap(n *yaml.Node, t reflect.Type, path string) *yaml.Node {
	if n.Kind != yaml.MappingNode {
		w.add(n, path, "expected a mapping of names, got %s", describe(n))
		return nil
	}
	c := *n
	c.Content = nil
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		name, ok := w.key(k, path)
		if !ok {
			continue
		}
		p := child(path, name)
		if first, dup := seen[name]; dup {
			w.add(k, p, "duplicate name %q; first defined at line %d", name, first.Line)
			continue
		}
		seen[name] = k
		w.keys[p] = k
		if isNull(v) {
			w.add(v, p, "expected %s, got nothing", withArticle(elemNoun(t.Elem())))
			continue
		}
		if cv := w.walk(v, t.Elem(), p); cv != nil {
			c.Content = append(c.Content, k, cv)
		}
	}
	return &c
}

func (w *walker) walkSlice(n *yaml.Node, t reflect.Type, path string) *yaml.Node {
	if n.Kind != yaml.SequenceNode {
		if isNull(n) {
			return n
		}
		w.add(n, path, "expected a list of %ss, got %s", elemNoun(t.Elem()), describe(n))
		return nil
	}
	c := *n
	c.Content = nil
	for i, e := range n.Content {
		p := index(path, i)
		if isNull(e) {
			w.vals[p] = e
			w.add(e, p, "expected %s, got nothing", withArticle(elemNoun(t.Elem())))
			continue
		}
		if ce := w.walk(e, t.Elem(), p); ce != nil {
			c.Content = append(c.Content, ce)
		} else {
			// Keep the index of later elements stable for the semantic
			// checks: a dropped element decodes as its zero value.
			c.Content = append(c.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Line: e.Line, Column: e.Column})
		}
	}
	return &c
}

func withArticle(noun string) string {
	if strings.ContainsAny(noun[:1], "aeiou") {
		return "an " + noun
	}
	return "a " + noun
}

// elemNoun names an element of a list or map for messages.
func elemNoun(t reflect.Type) string {
	switch t {
	case reflect.TypeFor[string]():
		return "id"
	case reflect.TypeFor[*Job]():
		return "job"
	case reflect.TypeFor[Fault]():
		return "fault"
	case reflect.TypeFor[*Account]():
		return "account"
	}
	return "value"
}

// translate turns an error of the strict yaml.v3 decoder into problems.
// The walker catches everything the decoder does first, so this only runs
// if the two disagree; yaml.v3 messages have a line but no column, name Go
// types and may quote values, so they are rewritten here and positioned
// with the node tree.
func (w *walker) translate(err error) Problems {
	var te *yaml.TypeError
	var re *secret.RefError
	switch {
	case errors.As(err, &re):
		return Problems{{File: w.file, Line: re.Line, Col: re.Column, Path: w.pathAt(re.Line, ""), Msg: re.Msg}}
	case errors.As(err, &te):
	default:
		fe := syntaxError(w.file, err)
		return Problems{fe}
	}
	var out Problems
	for _, s := range te.Errors {
		fe := &FieldError{File: w.file, Msg: "invalid value"}
		m := yamlLineRe.FindStringSubmatch(s)
		if m != nil {
			fe.Line, _ = strconv.Atoi(m[1])
			s = m[2]
		}
		name := ""
		switch {
		case strings.HasPrefix(s, "field ") && strings.Contains(s, " not found in type "):
			name = strings.TrimPrefix(s[:strings.Index(s, " not found in type ")], "field ")
			fe.Msg = fmt.Sprintf("unknown field %q", name)
		case strings.HasPrefix(s, "cannot unmarshal "):
			fe.Msg = "wrong type: expected " + goTypeNoun(s[strings.LastIndex(s, " into ")+len(" into "):])
		case strings.HasPrefix(s, "invalid duration "):
			fe.Msg = s + "; " + durationHint
		}
		fe.Path = w.pathAt(fe.Line, name)
		if n := w.vals[fe.Path]; n != nil {
			fe.Col = n.Column
			if k := w.keys[fe.Path]; k != nil && name != "" {
				fe.Col = k.Column
			}
		}
		out = append(out, fe)
	}
	return out
}

// pathAt finds the path of a node on line, preferring a key named name,
// and otherwise the leftmost node on the line.
func (w *walker) pathAt(line int, name string) string {
	var paths []string
	for p, n := range w.vals {
		if n.Line == line {
			paths = append(paths, p)
		}
	}
	sort.Slice(paths, func(i, j int) bool {
		a, b := w.vals[paths[i]], w.vals[paths[j]]
		if a.Column != b.Column {
			return a.Column < b.Column
		}
		return paths[i] < paths[j]
	})
	for _, p := range paths {
		if name != "" && strings.HasSuffix(p, "."+name) {
			return p
		}
	}
	if len(paths) > 0 {
		return paths[0]
	}
	return ""
}

// goTypeNoun names a Go type of the schedule in the user's words.
func goTypeNoun(t string) string {
	switch {
	case t == "int" || strings.HasPrefix(t, "int"):
		return "an integer"
	case strings.HasPrefix(t, "float"):
		return "a number"
	case t == "bool":
		return "true or false"
	case t == "string":
		return "a string"
	case t == "schedule.Duration":
		return "a duration like 30s"
	case t == "[]string":
		return "a list of ids"
	case strings.HasPrefix(t, "[]"):
		return "a list"
	}
	return "a mapping"
}
