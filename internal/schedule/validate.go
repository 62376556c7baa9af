package schedule

import (
	"fmt"
	"math"
	"net/url"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"
	_ "time/tzdata" // zones work on hosts without a zoneinfo database

	"github.com/cloudcron/scheduler/internal/engine"
	"github.com/cloudcron/scheduler/internal/secret"
	"github.com/cloudcron/scheduler/internal/vendors"
	"gopkg.in/yaml.v3"
)

// Vendors and what each accepts.
var (
	vendorNames = []string{"ncp", "scnet", "otc", "sandbox"}

	// vendorFields lists the account fields each vendor accepts; any other
	// field of Account set on an account of that vendor is an error.
	vendorFields = map[string][]string{
		"ncp":     {"vendor", "region", "access_key", "secret_key", "endpoints", "insecure_http", "rate_limit", "concurrency"},
		"scnet":   {"vendor", "token", "user", "access_key", "secret_key", "cluster", "endpoints", "insecure_http", "rate_limit", "concurrency"},
		"otc":     {"vendor", "region", "project_id", "auth", "access_key", "secret_key", "username", "password", "domain", "api", "endpoints", "insecure_http", "rate_limit", "concurrency"},
		"sandbox": {"vendor", "faults", "rate_limit", "concurrency"},
	}
	vendorEndpoints = map[string][]string{
		"ncp":   {"dataforest", "cdss"},
		"scnet": {"auth", "platform", "ai"},
		"otc":   {"modelarts", "iam"},
	}
	secretFields = []string{"access_key", "secret_key", "token", "user", "username", "password"}

	ncpRegions   = []string{"KR", "SGN", "JPN"}
	otcRegions   = []string{"eu-de", "eu-nl"}
	otcAuths     = []string{"aksk", "iam"}
	otcAPIs      = []string{"demanager", "notebooks"}
	overlaps     = []string{"skip", "queue", "allow"}
	faultKinds   = []string{"unavailable", "throttle", "delay", "drop", "reject", "manual_stop"}
	projectIDRe  = regexp.MustCompile(`^[0-9a-fA-F]{32}$`)
	catalogNames = func() []string {
		var s []string
		for name := range vendors.Catalogue {
			s = append(s, name)
		}
		sort.Strings(s)
		return s
	}()
)

// validator runs the semantic checks on a decoded, defaulted Config and
// fills its derived fields. Positions come from the walker's node index.
type validator struct {
	w      *walker
	c      *Config
	opts   Options
	anchor time.Time
	probs  Problems
	reuse  []*Job // see walker.reuse: these jobs were checked by an earlier load

	badPaths map[string]bool // paths at or above a walker problem; see bad

	// Per load, so that checking a job costs the same with 10 jobs or
	// 100 000: zones and schedules are parsed once per distinct value,
	// and the fixes that list every account or action are built once.
	zones      map[string]zone
	specs      map[specKey]parsedSpec
	firstJob   map[string]int        // job name → index of the first job of that name
	guesses    map[string]guess      // unknown account name → what it was probably meant to be
	uses       map[string]accountUse // sandbox account with faults → what its jobs run
	accountFix string
	actionFix  string
}

// guess is what an unknown name was probably meant to be.
type guess struct {
	closest string // see closest
	hint    string // see hint
}

// guessAccount returns what an unknown account name was probably meant to
// be, once per name: a misspelt name is often repeated in many jobs.
func (v *validator) guessAccount(name string, accounts []string) guess {
	g, ok := v.guesses[name]
	if !ok {
		g = guess{closest(name, accounts), hint(name, accounts)}
		v.guesses[name] = g
	}
	return g
}

// zone is a loaded time zone, or why it does not load.
type zone struct {
	loc *time.Location
	err error
}

// specKey is a schedule in a zone; parsedSpec is what it parses to.
type specKey struct {
	spec string
	loc  *time.Location
}

type parsedSpec struct {
	spec  engine.Schedule
	err   error
	never bool // spec never fires after the anchor
}

// zone loads the zone called name, once per load.
func (v *validator) zone(name string) (*time.Location, error) {
	z, ok := v.zones[name]
	if !ok {
		z.loc, z.err = loadZone(name)
		v.zones[name] = z
	}
	return z.loc, z.err
}

// parse parses a schedule in loc, once per load for each distinct pair:
// jobs that share a schedule share its immutable engine.Schedule.
// The second result says whether the schedule never fires after the
// anchor, asked once per pair too.
func (v *validator) parse(spec string, loc *time.Location) (engine.Schedule, bool, error) {
	k := specKey{spec, loc}
	p, ok := v.specs[k]
	if !ok {
		p.spec, p.err = engine.Parse(spec, loc, v.anchor)
		if p.err == nil && p.spec != nil {
			p.never = p.spec.Next(v.anchor).IsZero()
		}
		v.specs[k] = p
	}
	return p.spec, p.never, p.err
}

// node returns the node of path or of its nearest recorded ancestor.
func (v *validator) node(path string) *yaml.Node {
	for p := path; ; {
		if n := v.w.val(p); n != nil {
			return n
		}
		if p == "" {
			return nil
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			p = ""
		} else {
			p = p[:i]
		}
	}
}

func (v *validator) addAt(line, col int, path, format string, args ...any) {
	v.probs = append(v.probs, &FieldError{File: v.c.File, Path: path, Line: line, Col: col, Msg: fmt.Sprintf(format, args...)})
}

// errAt reports a problem with the value at path.
func (v *validator) errAt(path, format string, args ...any) {
	line, col := 0, 0
	if n := v.node(path); n != nil {
		line, col = n.Line, n.Column
	}
	v.addAt(line, col, path, format, args...)
}

// missingAt reports a problem at path, which is absent from the file, at
// the position of base (its parent).
func (v *validator) missingAt(base, path, format string, args ...any) {
	line, col := 0, 0
	if n := v.node(base); n != nil {
		line, col = n.Line, n.Column
	}
	v.addAt(line, col, path, format, args...)
}

// errKey reports a problem with the field at path itself (its key).
func (v *validator) errKey(path, format string, args ...any) {
	if k := v.w.keyAt(path); k != nil {
		v.addAt(k.Line, k.Column, path, format, args...)
		return
	}
	v.errAt(path, format, args...)
}

// present reports whether the file sets the field at path, even to null
// or to a value the walker rejected.
func (v *validator) present(path string) bool { return v.w.keyAt(path) != nil }

// set reports whether the file gives the field at path a non-null value
// that the walker accepted.
func (v *validator) set(path string) bool {
	n := v.w.val(path)
	return n != nil && !isNull(n) && !v.bad(path)
}

// anyBad reports whether the walker reported any problem: bad is false
// for every path when it did not.
func (v *validator) anyBad() bool { return len(v.w.probs) > 0 }

// bad reports whether the walker already reported a problem at or under path.
func (v *validator) bad(path string) bool {
	if v.badPaths == nil {
		v.badPaths = map[string]bool{}
		for _, p := range v.w.probs {
			for q := p.Path; ; {
				v.badPaths[q] = true
				i := strings.LastIndexAny(q, ".[")
				if i < 0 {
					break
				}
				q = q[:i]
			}
		}
	}
	return v.badPaths[path]
}

// need reports a required field that is missing or empty (zero) and
// returns whether its value can be checked further.
func (v *validator) need(base, field string, zero bool, fix string) bool {
	if !zero {
		return true
	}
	p := child(base, field)
	switch {
	case v.bad(p), v.w.typos[p]: // already reported, e.g. as a typo of this field
	case v.present(p):
		v.errAt(p, "must not be empty; %s", fix)
	default:
		v.missingAt(base, p, "missing; %s", fix)
	}
	return false
}

func oneOf(s string, set []string) bool { return slices.Contains(set, s) }

func loadZone(name string) (*time.Location, error) {
	if name == "Local" {
		return nil, fmt.Errorf("zone Local depends on the host; use an IANA name such as Europe/Berlin, Asia/Seoul or UTC")
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("unknown time zone %q; use an IANA name such as Europe/Berlin, Asia/Seoul or UTC", name)
	}
	return loc, nil
}

func (v *validator) run() {
	c := v.c
	v.zones = map[string]zone{}
	v.specs = map[specKey]parsedSpec{}
	v.firstJob = make(map[string]int, len(c.Jobs))
	v.guesses = map[string]guess{}
	if v.need("", "version", c.Version == 0 && !v.set("version"), "add version: 1 at the top") && c.Version != 1 {
		v.errAt("version", "unsupported version %d; this scheduler reads version 1", c.Version)
	}
	c.Loc = time.UTC
	if c.Timezone != "" {
		if loc, err := v.zone(c.Timezone); err != nil {
			v.errAt("timezone", "%s", err.Error())
		} else {
			c.Loc = loc
		}
	}
	v.need("audit", "path", c.Audit.Path == "", "set audit.path to the audit log file, e.g. /var/log/scheduler/audit.jsonl")
	if c.Audit.WatchdogAfter != nil && c.Audit.WatchdogAfter.D() <= 0 {
		v.errAt("audit.watchdog_after", "must be greater than 0, e.g. watchdog_after: 10m")
	}
	v.need("state", "dir", c.State.Dir == "", "set state.dir to a directory for run state, e.g. /var/lib/scheduler")
	v.checkPolicy(c.Defaults, "defaults")
	v.checkCluster()

	names := make([]string, 0, len(c.Accounts))
	for name := range c.Accounts {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if a := c.Accounts[name]; a != nil {
			v.checkAccount(name, a)
		}
	}
	v.accountFix = "name one of the accounts: " + list(names)
	if len(names) == 0 {
		v.accountFix = "define an account under accounts: and name it here"
	}
	v.actionFix = "name a catalogue action: " + list(catalogNames)

	if len(c.Jobs) == 0 && len(c.Windows) == 0 && !v.bad("jobs") {
		if v.present("jobs") {
			v.errAt("jobs", "no jobs; add at least one under jobs:")
		} else {
			v.missingAt("", "jobs", "missing; add at least one job under jobs:")
		}
	}
	used := map[string]bool{}
	for i, j := range c.Jobs {
		if j == nil {
			continue
		}
		if i < len(v.reuse) && v.reuse[i] == j {
			// Checked by the load it comes from, in a file whose rest
			// was the same; only its name can clash with a new job's.
			v.checkName(i, j)
		} else {
			v.checkJob(i, j, names)
		}
		used[j.Account] = true
		if c.Accounts[j.Account] == nil {
			// A misspelt account name is reported once, at the job.
			used[v.guessAccount(j.Account, names).closest] = true
		}
	}
	v.checkWindows(names)
	v.checkObserve()
	for _, w := range c.Windows {
		if w != nil {
			used[w.Account] = true
		}
	}
	for _, name := range names {
		if !used[name] && len(c.Jobs)+len(c.Windows) > 0 {
			v.errKey(child("accounts", name), "account %q is not used by any %s; remove it or add a job that uses it", name, v.users())
		}
		if a := c.Accounts[name]; a != nil {
			v.checkFaults(name, a)
		}
	}
	if v.opts.CheckSecrets {
		v.checkSecrets(names)
	}
}

func (v *validator) checkJob(i int, j *Job, accounts []string) {
	c := v.c
	base := index("jobs", i)
	if n := v.w.val(base); n != nil {
		j.Line, j.Column = n.Line, n.Column
	}
	if v.need(base, "name", j.Name == "", "every job needs a unique name") {
		if msg := NameProblem(j.Name); msg != "" {
			v.errAt(child(base, "name"), "%s", msg)
		} else {
			v.checkName(i, j)
		}
	}

	j.Loc = c.Loc
	if j.Timezone != "" {
		if loc, err := v.zone(j.Timezone); err != nil {
			v.errAt(child(base, "timezone"), "%s", err.Error())
		} else {
			j.Loc = loc
		}
	}
	if v.need(base, "schedule", j.Schedule == "", `e.g. schedule: "0 9 * * MON-FRI"`) {
		spec, never, err := v.parse(j.Schedule, j.Loc)
		switch {
		case err != nil:
			v.errAt(child(base, "schedule"), "invalid schedule %q: %s", j.Schedule, err.Error())
		case spec == nil:
			v.errAt(child(base, "schedule"), "invalid schedule %q", j.Schedule)
		case never:
			v.errAt(child(base, "schedule"), "schedule %q never fires: no date matches its day-of-month and month fields (such as 30 February or 31 April); a job that can never run is a mistake", j.Schedule)
		default:
			j.Spec = spec
		}
	}

	var acc *Account
	if v.need(base, "account", j.Account == "", v.accountFix) {
		acc = c.Accounts[j.Account]
		if acc == nil && !v.bad(child("accounts", j.Account)) {
			if len(accounts) == 0 {
				v.errAt(child(base, "account"), "unknown account %q; no accounts are defined (add one under accounts:)", j.Account)
			} else {
				v.errAt(child(base, "account"), "unknown account %q; %s", j.Account, v.guessAccount(j.Account, accounts).hint)
			}
		}
	}
	if v.need(base, "action", j.Action == "", v.actionFix) {
		info, ok := vendors.Catalogue[j.Action]
		switch {
		case !ok:
			v.errAt(child(base, "action"), "unknown action %q; %s", j.Action, hint(j.Action, catalogNames))
		case acc != nil && oneOf(acc.Vendor, vendorNames) && acc.Vendor != "sandbox" && acc.Vendor != info.Vendor:
			v.errAt(child(base, "action"), "action %q belongs to vendor %s, but account %q is vendor %s, which offers: %s",
				j.Action, info.Vendor, j.Account, acc.Vendor, list(vendorActions(acc.Vendor)))
		}
	}

	tp := child(base, "targets")
	if len(j.Targets) == 0 && !v.bad(tp) {
		if v.present(tp) {
			v.errAt(tp, "no targets; list the ids to act on, e.g. targets: [id1, id2]")
		} else {
			v.need(base, "targets", true, "list the ids to act on, e.g. targets: [id1, id2]")
		}
	}
	seen := map[string]int{}
	for k, t := range j.Targets {
		// The path of a target is only written out for a problem.
		if v.anyBad() && v.bad(index(tp, k)) {
			continue
		}
		if strings.TrimSpace(t) == "" {
			v.errAt(index(tp, k), "empty target id")
			continue
		}
		if first, dup := seen[t]; dup {
			v.errAt(index(tp, k), "duplicate target %q; already listed as targets[%d]", t, first)
			continue
		}
		seen[t] = k
		if msg := targetProblem(j.Action, t); msg != "" {
			v.errAt(index(tp, k), "%s", msg)
		}
	}
	if v.writesPolicy(base) {
		v.checkPolicy(j.Policy, base)
	}
}

// checkName reports job i's name if an earlier job has it.
func (v *validator) checkName(i int, j *Job) {
	if first, dup := v.firstJob[j.Name]; dup {
		line := v.node(child(index("jobs", first), "name")).Line
		v.errAt(child(index("jobs", i), "name"), "duplicate job name %q; first defined at line %d", j.Name, line)
	} else {
		v.firstJob[j.Name] = i
	}
}

// writesPolicy reports whether the job at base writes a policy field
// itself; checkPolicy has nothing to report about one that does not.
func (v *validator) writesPolicy(base string) bool {
	n := v.w.val(base)
	if n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n == nil || n.Kind != yaml.MappingNode {
		return true
	}
	fields, _, _ := fieldsOf(reflect.TypeFor[Policy]())
	for i := 0; i < len(n.Content); i += 2 {
		k := n.Content[i]
		if k.Kind == yaml.AliasNode && k.Alias != nil {
			k = k.Alias
		}
		if _, ok := fields[k.Value]; ok {
			return true
		}
	}
	return false
}

// targetProblem checks a target id against the format the action's vendor
// documents, so a typo fails validation instead of the 03:00 fire.
func targetProblem(action, id string) string {
	switch {
	case strings.HasPrefix(action, "cdss."):
		for _, r := range id {
			if r < '0' || r > '9' {
				return fmt.Sprintf("target %q is not a CDSS cluster number (serviceGroupInstanceNo: digits only, e.g. \"1484848\")", id)
			}
		}
	case strings.HasPrefix(action, "dataforest."):
		for _, r := range id {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-._~", r)) {
				return fmt.Sprintf("target %q is not a Data Forest id (letters and digits, e.g. \"7kHeVWhiRsxdRl0nXz04ri\"; from the getList API)", id)
			}
		}
	}
	return ""
}

func vendorActions(vendor string) []string {
	var s []string
	for name, info := range vendors.Catalogue {
		if info.Vendor == vendor {
			s = append(s, name)
		}
	}
	return s
}

// checkPolicy checks an effective policy at base ("defaults" or "jobs[i]").
// Only values the file sets at base are reported: a job's inherited values
// were checked at defaults, and the built-in ones are valid.
func (v *validator) checkPolicy(p Policy, base string) {
	dur := func(field string, d *Duration, positive bool) {
		path := child(base, field)
		if !v.set(path) || d == nil {
			return
		}
		switch {
		case d.D() < 0:
			v.errAt(path, "negative duration %s; must be 0 or more", d.D())
		case d.D() == 0 && positive:
			v.errAt(path, "must be greater than 0, e.g. 30s")
		}
	}
	dur("timeout", p.Timeout, true)
	dur("catchup", p.Catchup, false)
	dur("verify_timeout", p.VerifyTimeout, true)
	if p.Overlap != "" && !oneOf(p.Overlap, overlaps) && v.set(child(base, "overlap")) {
		v.errAt(child(base, "overlap"), "unknown overlap %q; %s", p.Overlap, hint(p.Overlap, overlaps))
	}
	r := p.Retry
	if r == nil {
		return
	}
	rb := child(base, "retry")
	dur("retry.initial_interval", r.InitialInterval, true)
	dur("retry.max_interval", r.MaxInterval, true)
	dur("retry.max_elapsed", r.MaxElapsed, false)
	if r.MaxAttempts != nil && *r.MaxAttempts < 1 && v.set(child(rb, "max_attempts")) {
		v.errAt(child(rb, "max_attempts"), "must be at least 1 (1 = no retries)")
	}
	if ini, mx := r.InitialInterval.D(), r.MaxInterval.D(); ini > 0 && mx > 0 && ini > mx {
		for _, f := range []string{"initial_interval", "max_interval"} {
			if p := child(rb, f); v.set(p) {
				v.errAt(p, "initial_interval %s exceeds max_interval %s", ini, mx)
				break
			}
		}
	}
}

func (v *validator) checkAccount(name string, a *Account) {
	base := child("accounts", name)
	a.Name = name
	if !v.need(base, "vendor", a.Vendor == "", "set vendor to one of ncp, scnet, otc, sandbox") {
		return
	}
	if !oneOf(a.Vendor, vendorNames) {
		v.errAt(child(base, "vendor"), "unknown vendor %q; %s", a.Vendor, hint(a.Vendor, vendorNames))
		return
	}
	allowed := vendorFields[a.Vendor]
	_, fields, _ := fieldsOf(reflect.TypeFor[Account]())
	for _, f := range fields {
		p := child(base, f)
		if !v.present(p) || oneOf(f, allowed) {
			continue
		}
		switch {
		case a.Vendor == "sandbox" && (oneOf(f, secretFields) || f == "endpoints" || f == "insecure_http"):
			v.errKey(p, "vendor sandbox needs no credentials or endpoints; remove %s", f)
		case f == "faults":
			v.errKey(p, "faults are only allowed on sandbox accounts (vendor: sandbox)")
		default:
			v.errKey(p, "%s does not apply to vendor %s; its fields are: %s", f, a.Vendor, list(allowed))
		}
	}
	ref := func(field string, r *secret.Ref) bool { return r == nil && !v.present(child(base, field)) }
	switch a.Vendor {
	case "ncp":
		v.need(base, "access_key", ref("access_key", a.AccessKey), "ncp needs access_key: {env: NAME}")
		v.need(base, "secret_key", ref("secret_key", a.SecretKey), "ncp needs secret_key: {env: NAME}")
		if a.Region == "" {
			a.Region = "KR"
		} else if !oneOf(a.Region, ncpRegions) {
			v.errAt(child(base, "region"), "unknown ncp region %q; %s", a.Region, hint(a.Region, ncpRegions))
		}
	case "scnet":
		hasToken := !ref("token", a.Token)
		if hasToken {
			for _, f := range []string{"user", "access_key", "secret_key"} {
				if v.present(child(base, f)) {
					v.errKey(child(base, f), "set either token, or user, access_key and secret_key, not both")
				}
			}
		} else {
			fix := "scnet needs token, or user, access_key and secret_key"
			v.need(base, "user", ref("user", a.User), fix)
			v.need(base, "access_key", ref("access_key", a.AccessKey), fix)
			v.need(base, "secret_key", ref("secret_key", a.SecretKey), fix)
		}
	case "otc":
		if v.need(base, "project_id", a.ProjectID == "", "set project_id to the 32 hex digits of the OTC project") && !projectIDRe.MatchString(a.ProjectID) {
			v.errAt(child(base, "project_id"), "project_id must be 32 hex digits (My Credentials > Projects)")
		}
		if a.Region == "" {
			a.Region = "eu-de"
		} else if !oneOf(a.Region, otcRegions) {
			v.errAt(child(base, "region"), "unknown otc region %q; %s", a.Region, hint(a.Region, otcRegions))
		}
		if a.API == "" {
			a.API = "demanager"
		} else if !oneOf(a.API, otcAPIs) {
			v.errAt(child(base, "api"), "unknown api %q; %s", a.API, hint(a.API, otcAPIs))
		}
		if a.Auth == "" {
			a.Auth = "aksk"
		}
		switch a.Auth {
		case "aksk":
			v.need(base, "access_key", ref("access_key", a.AccessKey), "auth aksk needs access_key and secret_key")
			v.need(base, "secret_key", ref("secret_key", a.SecretKey), "auth aksk needs access_key and secret_key")
			for _, f := range []string{"username", "password", "domain"} {
				if v.present(child(base, f)) {
					v.errKey(child(base, f), "%s applies to auth: iam only; this account uses auth: aksk", f)
				}
			}
		case "iam":
			v.need(base, "username", ref("username", a.Username), "auth iam needs username, password and domain")
			v.need(base, "password", ref("password", a.Password), "auth iam needs username, password and domain")
			v.need(base, "domain", a.Domain == "", "auth iam needs username, password and domain")
			for _, f := range []string{"access_key", "secret_key"} {
				if v.present(child(base, f)) {
					v.errKey(child(base, f), "%s applies to auth: aksk only; this account uses auth: iam", f)
				}
			}
		default:
			v.errAt(child(base, "auth"), "unknown auth %q; %s", a.Auth, hint(a.Auth, otcAuths))
		}
	}
	if allowedEP, ok := vendorEndpoints[a.Vendor]; ok {
		keys := make([]string, 0, len(a.Endpoints))
		for k := range a.Endpoints {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			p := child(child(base, "endpoints"), k)
			if !oneOf(k, allowedEP) {
				v.errKey(p, "unknown endpoint %q for vendor %s; %s", k, a.Vendor, hint(k, allowedEP))
				continue
			}
			if msg := checkURL(a.Endpoints[k]); msg != "" {
				v.errAt(p, "%s", msg)
			}
		}
		v.checkInsecure(base, a)
	}
	if rl := a.RateLimit; rl != nil {
		rb := child(base, "rate_limit")
		if v.need(rb, "per_second", rl.PerSecond == 0 && !v.set(child(rb, "per_second")), "set per_second, e.g. rate_limit: {per_second: 5, burst: 10}") &&
			(!(rl.PerSecond > 0) || math.IsInf(rl.PerSecond, 0)) {
			v.errAt(child(rb, "per_second"), "must be a number greater than 0")
		}
		if v.set(child(rb, "burst")) && rl.Burst < 1 {
			v.errAt(child(rb, "burst"), "must be at least 1")
		}
		if rl.Burst == 0 && rl.PerSecond > 0 && !math.IsInf(rl.PerSecond, 0) {
			rl.Burst = int(math.Ceil(math.Min(rl.PerSecond, math.MaxInt32)))
		}
	}
	if v.set(child(base, "concurrency")) && a.Concurrency < 1 {
		v.errAt(child(base, "concurrency"), "must be at least 1")
	}
	if a.Concurrency == 0 {
		a.Concurrency = DefaultConcurrency
	}
}

// checkURL returns what is wrong with an endpoint, or "". It never quotes a
// URL that carries credentials.
func checkURL(s string) string {
	const want = "want an absolute http(s) URL like https://host"
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return "invalid URL; " + want
	case u.User != nil:
		return "an endpoint must not carry credentials (user:password@); use the account's secret fields"
	case u.Scheme != "http" && u.Scheme != "https" || u.Host == "":
		return fmt.Sprintf("invalid endpoint %q; %s", s, want)
	}
	return ""
}

// checkFaults checks a sandbox account's faults against the jobs that use
// the account.
func (v *validator) checkFaults(name string, a *Account) {
	if a.Vendor != "sandbox" || len(a.Faults) == 0 {
		return
	}
	if v.uses == nil {
		v.uses = v.faultUses()
	}
	actions, targets := v.uses[name].actions, v.uses[name].targets
	for k, f := range a.Faults {
		base := index(child(child("accounts", name), "faults"), k)
		if v.bad(base) && v.w.val(base) != nil && isNull(v.w.val(base)) {
			continue
		}
		if v.need(base, "kind", f.Kind == "", "set kind to one of "+strings.Join(faultKinds, ", ")) && !oneOf(f.Kind, faultKinds) {
			v.errAt(child(base, "kind"), "unknown fault kind %q; %s", f.Kind, hint(f.Kind, faultKinds))
		}
		if f.Action != "" {
			if _, ok := vendors.Catalogue[f.Action]; !ok {
				v.errAt(child(base, "action"), "unknown action %q; %s", f.Action, hint(f.Action, catalogNames))
			} else if !actions[f.Action] {
				v.errAt(child(base, "action"), "no %s on account %q runs %s; the fault would never apply", v.users(), name, f.Action)
			}
		}
		if f.Target != "" && !targets[f.Target] {
			v.errAt(child(base, "target"), "target %q is not a target of any %s on account %q", f.Target, v.users(), name)
		}
		if f.Times < 0 {
			v.errAt(child(base, "times"), "must be 0 (every request) or more")
		}
		if p := child(base, "retry_after"); v.set(p) {
			if f.Kind != "throttle" && f.Kind != "unavailable" {
				v.errKey(p, "retry_after applies to kind throttle or unavailable only")
			} else if f.RetryAfter.D() < 0 {
				v.errAt(p, "negative duration %s; must be 0 or more", f.RetryAfter.D())
			}
		}
		p := child(base, "delay")
		if f.Kind == "manual_stop" {
			v.checkManualStop(base, f)
			continue
		}
		switch {
		case f.Kind == "delay" && !v.bad(p) && (f.Delay == nil || f.Delay.D() == 0):
			if v.set(p) {
				v.errAt(p, "must be greater than 0 for kind delay")
			} else {
				v.need(base, "delay", true, "kind delay needs delay, e.g. delay: 45s")
			}
		case f.Kind == "delay" && f.Delay.D() < 0:
			v.errAt(p, "negative duration %s; must be greater than 0", f.Delay.D())
		case f.Kind != "delay" && v.set(p):
			v.errKey(p, "delay applies to kind delay or manual_stop only")
		}
	}
}

// accountUse is what the jobs of one account run.
type accountUse struct {
	actions, targets map[string]bool
}

// faultUses returns what the jobs of each sandbox account with faults run,
// in one pass over the jobs.
func (v *validator) faultUses() map[string]accountUse {
	uses := map[string]accountUse{}
	for name, a := range v.c.Accounts {
		if a != nil && a.Vendor == "sandbox" && len(a.Faults) > 0 {
			uses[name] = accountUse{actions: map[string]bool{}, targets: map[string]bool{}}
		}
	}
	for _, j := range v.c.Jobs {
		if j == nil {
			continue
		}
		if u, ok := uses[j.Account]; ok {
			u.actions[j.Action] = true
			for _, t := range j.Targets {
				u.targets[t] = true
			}
		}
	}
	for _, w := range v.c.Windows {
		if w == nil {
			continue
		}
		if u, ok := uses[w.Account]; ok {
			u.actions[w.StartAction()] = true
			u.actions[w.StopAction()] = true
			for _, t := range w.Targets {
				u.targets[t] = true
			}
		}
	}
	return uses
}

// checkSecrets resolves every secret reference of every account with
// opts.Resolver. The resolver's messages name the source, never the value.
func (v *validator) checkSecrets(names []string) {
	for _, name := range names {
		a := v.c.Accounts[name]
		if a == nil || !oneOf(a.Vendor, vendorNames) {
			continue
		}
		refs := map[string]*secret.Ref{
			"access_key": a.AccessKey, "secret_key": a.SecretKey, "token": a.Token,
			"user": a.User, "username": a.Username, "password": a.Password,
		}
		for _, f := range secretFields {
			r := refs[f]
			if r == nil || !oneOf(f, vendorFields[a.Vendor]) {
				continue
			}
			if _, err := v.opts.Resolver.Resolve(*r); err != nil {
				v.addAt(r.Line, r.Column, child(child("accounts", name), f), "%s", err.Error())
			}
		}
	}
}
