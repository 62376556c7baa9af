package schedule

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cloudcron/scheduler/internal/secret"
	"gopkg.in/yaml.v3"
)

// Alias expansion is bounded relative to the document, not its size: the
// nodes a document reaches through its aliases, counted as if every alias
// were written out, may number at most aliasFactor times the nodes it
// writes, or minAliasBudget for a small document. An honest file of any
// size loads, and an alias bomb ("billion laughs") is refused after one
// pass over the nodes it writes, before anything is expanded.
const (
	aliasFactor    = 10
	minAliasBudget = 1 << 16
)

const durationHint = "use Go syntax like 30s, 5m, 1h30m"

var (
	refType      = reflect.TypeFor[secret.Ref]()
	durationType = reflect.TypeFor[Duration]()
	yamlLineRe   = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)
)

// parseDoc reads exactly one YAML document and returns its root node and
// the number of nodes it writes.
func parseDoc(file string, data []byte) (*yaml.Node, int, *FieldError) {
	if procs := runtime.GOMAXPROCS(0); procs > 1 && len(data) >= splitMinBytes {
		if root, ok := parseSplit(data, procs, splitMinItems); ok {
			nodes, fe := checkAliases(file, root)
			if fe != nil {
				return nil, 0, fe
			}
			return root, nodes, nil
		}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, 0, &FieldError{File: file, Line: 1, Col: 1, Msg: "empty schedule; a schedule starts with version: 1"}
		}
		return nil, 0, syntaxError(file, err)
	}
	if len(doc.Content) == 0 || isNull(doc.Content[0]) {
		return nil, 0, &FieldError{File: file, Line: max(doc.Line, 1), Col: max(doc.Column, 1), Msg: "empty schedule; a schedule starts with version: 1"}
	}
	root := doc.Content[0]
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, 0, syntaxError(file, err)
	default:
		n := &next
		if len(next.Content) > 0 {
			n = next.Content[0]
		}
		return nil, 0, &FieldError{File: file, Line: n.Line, Col: n.Column,
			Msg: "a second YAML document is not allowed; a schedule is one document (remove the extra ---)"}
	}
	if root.Kind != yaml.MappingNode {
		return nil, 0, &FieldError{File: file, Line: root.Line, Col: root.Column,
			Msg: "expected a mapping (version, timezone, audit, state, defaults, accounts, jobs), got " + describe(root)}
	}
	nodes, fe := checkAliases(file, root)
	if fe != nil {
		return nil, 0, fe
	}
	return root, nodes, nil
}

// aliasCount measures what the aliases of a document expand to without
// expanding them: each written node is visited once, and an alias counts
// the size of its anchor's value, remembered per anchor.
type aliasCount struct {
	written  int                // nodes the document writes, aliases included
	expanded int                // nodes reached through aliases
	sizes    map[*yaml.Node]int // anchored node → size with aliases written out; -1 while it is being counted
	cycle    *yaml.Node         // an alias inside the value of its own anchor
	stopAt   int                // when > 0, stop at the alias where expanded passes it
	stopped  *yaml.Node         // that alias
}

// sizeCap keeps sizes from overflowing (the sum of two fits in an int); any
// size near it is far beyond a budget.
const sizeCap = math.MaxInt / 2

// visit counts n and the nodes under it and returns the size of n with its
// aliases written out, at most sizeCap.
func (a *aliasCount) visit(n *yaml.Node) int {
	if a.cycle != nil || a.stopped != nil {
		return 0
	}
	a.written++
	if n.Kind == yaml.AliasNode {
		if n.Alias == nil {
			return 1
		}
		s, ok := a.sizes[n.Alias]
		if !ok {
			// The parser only aliases an anchor it has read, so this is
			// a tree built otherwise: count the value where it is used.
			s = a.visit(n.Alias)
		}
		if s < 0 {
			a.cycle = n
			return 0
		}
		a.expanded = min(a.expanded+s, sizeCap)
		if a.stopAt > 0 && a.expanded > a.stopAt {
			a.stopped = n
		}
		return s
	}
	if n.Anchor != "" {
		a.sizes[n] = -1
	}
	s := 1
	for _, c := range n.Content {
		s = min(s+a.visit(c), sizeCap)
	}
	if n.Anchor != "" {
		a.sizes[n] = s
	}
	return s
}

// checkAliases returns the number of nodes the document writes. It refuses
// a document whose aliases expand too much (see aliasFactor), at the alias
// where the expansion passes the budget, and a document with an alias
// inside the value of its own anchor, which never ends.
func checkAliases(file string, root *yaml.Node) (int, *FieldError) {
	a := &aliasCount{sizes: map[*yaml.Node]int{}}
	a.visit(root)
	if n := a.cycle; n != nil {
		return 0, &FieldError{File: file, Line: n.Line, Col: n.Column,
			Msg: fmt.Sprintf("alias *%s is inside the value of its own anchor &%s and would expand forever; an alias may only repeat a value that ends before it", n.Value, n.Value)}
	}
	budget := max(minAliasBudget, aliasFactor*a.written)
	if a.expanded <= budget {
		return a.written, nil
	}
	// Count again to find the alias where the expansion passes the budget.
	written := a.written
	a = &aliasCount{sizes: map[*yaml.Node]int{}, stopAt: budget}
	a.visit(root)
	n := a.stopped
	if n == nil { // cannot happen: the count is the same
		n = root
	}
	return 0, &FieldError{File: file, Line: n.Line, Col: n.Column,
		Msg: fmt.Sprintf("document expands aliases too much: they reach more than %d nodes for %d written (the limit is %d per node written, or %d for a small file); "+
			"write the repeated values out instead of aliasing them, and set what jobs share once under defaults:",
			budget, written, aliasFactor, minAliasBudget)}
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
// semantic checks, and builds a clean copy of the tree, with aliases
// written out and without the offending nodes, so that decoding can go on
// and later checks still run.
type walker struct {
	file  string
	probs Problems
	nodes map[string]pathNodes // path → its nodes
	typos map[string]bool      // paths of fields an unknown field was probably meant to be
	lines map[int][]string     // line → paths of the values on it, leftmost first; see pathAt
}

// pathNodes are the nodes of one path.
type pathNodes struct {
	key *yaml.Node // the key of a mapping entry; nil for a list element
	val *yaml.Node // the value (the alias, not its target); nil for a key without a value
}

// newWalker returns a walker for a document that writes about nodes nodes.
func newWalker(file string, nodes int) *walker {
	// A path per mapping entry or list element: about half the nodes.
	return &walker{file: file, nodes: make(map[string]pathNodes, nodes/2), typos: map[string]bool{}}
}

// val returns the value node of path, or nil.
func (w *walker) val(path string) *yaml.Node { return w.nodes[path].val }

// keyAt returns the key node of path, or nil.
func (w *walker) keyAt(path string) *yaml.Node { return w.nodes[path].key }

func (w *walker) add(n *yaml.Node, path, format string, args ...any) {
	w.probs = append(w.probs, &FieldError{File: w.file, Path: path, Line: n.Line, Col: n.Column, Msg: fmt.Sprintf(format, args...)})
}

func child(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func index(path string, i int) string { return path + "[" + strconv.Itoa(i) + "]" }

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

// walk checks n, the value of key k (nil for a list element or the root),
// against type t at path and returns a clean copy, or nil when n cannot be
// decoded into t.
func (w *walker) walk(k, n *yaml.Node, t reflect.Type, path string) *yaml.Node {
	w.nodes[path] = pathNodes{k, n}
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
		c := w.walk(k, target, t, path)
		w.nodes[path] = pathNodes{k, n}
		return c
	}
	if t.Kind() == reflect.Pointer {
		if isNull(n) {
			return n
		}
		t = t.Elem()
	}
	switch {
	case t == holidayType:
		return w.walkHoliday(n, path)
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
	if _, str := v.(*string); str && n.Kind == yaml.ScalarNode && n.Tag == "!!str" {
		return n // what Decode would say, without a decoder per value
	}
	if n.Kind != yaml.ScalarNode || n.Decode(v) != nil {
		w.add(n, path, "expected %s, got %s", want, describe(n))
		return nil
	}
	return n
}

// structFields is what fieldsOf returns for one type.
type structFields struct {
	types map[string]reflect.Type
	names []string
}

// fieldsCache holds fieldsOf of each struct type seen: reflect.Type → structFields.
var fieldsCache sync.Map

// fieldsOf maps the yaml names of t's fields, inline structs flattened, to
// their types, and lists them in declaration order. The result is shared:
// callers must not change it.
func fieldsOf(t reflect.Type) (map[string]reflect.Type, []string) {
	if f, ok := fieldsCache.Load(t); ok {
		f := f.(structFields)
		return f.types, f.names
	}
	types, names := fieldsOfType(t)
	fieldsCache.Store(t, structFields{types, names})
	return types, names
}

func fieldsOfType(t reflect.Type) (map[string]reflect.Type, []string) {
	types := map[string]reflect.Type{}
	var names []string
	for f := range t.Fields() {
		tag := f.Tag.Get("yaml")
		name, opts, _ := strings.Cut(tag, ",")
		if tag == "-" || !f.IsExported() {
			continue
		}
		if opts == "inline" {
			sub, subNames := fieldsOfType(f.Type)
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

// key checks a mapping key node and returns its name and the node to keep
// in the clean copy (the key itself, or the value of an aliased key).
func (w *walker) key(k *yaml.Node, path string) (string, *yaml.Node, bool) {
	if k.Kind == yaml.AliasNode && k.Alias != nil {
		k = k.Alias
	}
	if k.Kind != yaml.ScalarNode {
		w.add(k, path, "expected a name as key, got %s", describe(k))
		return "", nil, false
	}
	if k.ShortTag() == "!!merge" {
		w.add(k, path, "merge keys (<<) are not supported; write the fields out")
		return "", nil, false
	}
	if k.Value == "" || isNull(k) {
		w.add(k, path, "empty key")
		return "", nil, false
	}
	return k.Value, k, true
}

func (w *walker) walkStruct(n *yaml.Node, t reflect.Type, path string) *yaml.Node {
	if n.Kind != yaml.MappingNode {
		w.add(n, path, "expected a mapping, got %s", describe(n))
		return nil
	}
	types, names := fieldsOf(t)
	c := *n
	c.Content = make([]*yaml.Node, 0, len(n.Content))
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		name, ck, ok := w.key(k, path)
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
		if cv := w.walk(k, v, ft, p); cv != nil {
			c.Content = append(c.Content, ck, cv)
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
	c.Content = make([]*yaml.Node, 0, len(n.Content))
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		name, ck, ok := w.key(k, path)
		if !ok {
			continue
		}
		p := child(path, name)
		if first, dup := seen[name]; dup {
			w.add(k, p, "duplicate name %q; first defined at line %d", name, first.Line)
			continue
		}
		seen[name] = k
		if isNull(v) {
			w.nodes[p] = pathNodes{key: k}
			w.add(v, p, "expected %s, got nothing", withArticle(elemNoun(t.Elem())))
			continue
		}
		if cv := w.walk(k, v, t.Elem(), p); cv != nil {
			c.Content = append(c.Content, ck, cv)
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
	c.Content = make([]*yaml.Node, 0, len(n.Content))
	for i, e := range n.Content {
		p := index(path, i)
		if isNull(e) {
			w.nodes[p] = pathNodes{val: e}
			w.add(e, p, "expected %s, got nothing", withArticle(elemNoun(t.Elem())))
			continue
		}
		if ce := w.walk(nil, e, t.Elem(), p); ce != nil {
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
		if pn := w.nodes[fe.Path]; pn.val != nil {
			fe.Col = pn.val.Column
			if k := pn.key; k != nil && name != "" {
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
	if w.lines == nil {
		// Index the paths by line once: a decoder error can come per job.
		w.lines = map[int][]string{}
		for p, pn := range w.nodes {
			if pn.val != nil {
				w.lines[pn.val.Line] = append(w.lines[pn.val.Line], p)
			}
		}
		for _, paths := range w.lines {
			sort.Slice(paths, func(i, j int) bool {
				a, b := w.val(paths[i]), w.val(paths[j])
				if a.Column != b.Column {
					return a.Column < b.Column
				}
				return paths[i] < paths[j]
			})
		}
	}
	paths := w.lines[line]
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
