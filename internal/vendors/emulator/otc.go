package emulator

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

const (
	otcLockAfter = 5               // consecutive signature failures that lock an AK
	otcLockFor   = 5 * time.Minute // how long it stays locked
)

// otcError is the APIG / ModelArts error body (vendors.md §4.6).
func otcError(status int, code, msg string) reply {
	return jsonReply(status, code, map[string]any{"error_code": code, "error_msg": msg})
}

// otcDEError is the DevEnviron (demanager) form, which says error_message.
func otcDEError(status int, code, msg string) reply {
	return jsonReply(status, code, map[string]any{"error_code": code, "error_message": msg})
}

// keystoneError is IAM's error body.
func keystoneError(status int, title, msg string) reply {
	return jsonReply(status, strconv.Itoa(status), map[string]any{
		"error": map[string]any{"code": status, "title": title, "message": msg},
	})
}

var otcMessages = map[string]string{
	"ModelArts.6305": "The instance is already running.",
	"ModelArts.6306": "The instance is starting.",
	"ModelArts.6307": "The instance has already been stopped.",
	"ModelArts.6308": "The instance is stopping.",
	"ModelArts.6309": "The instance does not exist.",
	"ModelArts.6326": "The instance is frozen.",
	"ModelArts.6327": "The instance is not running.",
	"ModelArts.0104": "Parameter error.",
}

// otcAPI tells the two ModelArts notebook APIs apart.
type otcAPI int

const (
	otcDemanager otcAPI = iota // §4.4, historical DevEnviron
	otcNotebooks               // §4.5
)

func (c *Cloud) routeOTC(k *call) (*route, reply) {
	notFound := otcError(http.StatusNotFound, "APIG.0101", "The API does not exist or has not been published in the environment")
	p, m := k.r.URL.Path, k.r.Method
	if p == "/v3/auth/tokens" {
		if m != http.MethodPost {
			return nil, notFound
		}
		return &route{vendor: VendorOTC, action: "iam.tokens", handle: iamTokens,
			reject: func(*Cloud, *call) reply {
				return keystoneError(http.StatusUnauthorized, "Unauthorized", "The username or password is wrong.")
			}}, reply{}
	}
	// /v1/{project}/demanager/instances/{id}[/action] or /v1/{project}/notebooks/{id}[/start|/stop]
	parts := strings.Split(strings.TrimPrefix(p, "/v1/"), "/")
	if len(parts) < 3 || parts[0] == "" {
		return nil, notFound
	}
	project := parts[0]
	rt := &route{vendor: VendorOTC, auth: authOTC(project)}
	var api otcAPI
	switch {
	case len(parts) == 4 && parts[1] == "demanager" && parts[2] == "instances" && m == http.MethodGet:
		rt.action, rt.target, api = "modelarts.notebook.get", parts[3], otcDemanager
		rt.handle = otcGet(otcDemanager)
	case len(parts) == 5 && parts[1] == "demanager" && parts[2] == "instances" && parts[4] == "action" && m == http.MethodPost:
		var body struct {
			Action string `json:"action"`
		}
		_ = decodeJSON(k.body, &body)
		rt.action, rt.target, api = "modelarts.notebook."+body.Action, parts[3], otcDemanager
		rt.handle = otcDemanagerAction(body.Action)
	case len(parts) == 3 && parts[1] == "notebooks" && m == http.MethodGet && parts[2] != "all":
		rt.action, rt.target, api = "modelarts.notebook.get", parts[2], otcNotebooks
		rt.handle = otcGet(otcNotebooks)
	case len(parts) == 4 && parts[1] == "notebooks" && m == http.MethodPost && (parts[3] == "start" || parts[3] == "stop"):
		rt.action, rt.target, api = "modelarts.notebook."+parts[3], parts[2], otcNotebooks
		rt.handle = otcNotebooksAction(parts[3])
	default:
		return nil, notFound
	}
	if rt.target == "" {
		return nil, notFound
	}
	rt.reject = func(*Cloud, *call) reply {
		if api == otcDemanager {
			return otcDEError(http.StatusBadRequest, "ModelArts.6309", otcMessages["ModelArts.6309"])
		}
		return otcError(http.StatusNotFound, "ModelArts.6309", otcMessages["ModelArts.6309"])
	}
	return rt, reply{}
}

// authOTC accepts an IAM token or an APIG AK/SK signature, for the
// project in the path.
func authOTC(project string) func(c *Cloud, k *call) *reply {
	return func(c *Cloud, k *call) *reply {
		fail := func(rep reply) *reply { return &rep }
		if tok := k.r.Header.Get("X-Auth-Token"); tok != "" {
			c.mu.Lock()
			t, ok := c.iamTokens[tok]
			c.mu.Unlock()
			switch {
			case !ok:
				return fail(otcError(http.StatusUnauthorized, "APIG.0301", "Incorrect IAM authentication information: verify token failed"))
			case !k.now.Before(t.expires):
				return fail(otcError(http.StatusUnauthorized, "APIG.0307", "The token must be updated"))
			case t.projectID == "":
				return fail(otcError(http.StatusUnauthorized, "ModelArts.0207", "The token does not contain project information."))
			case t.projectID != project:
				return fail(otcError(http.StatusUnauthorized, "ModelArts.0212", "The project in the token does not match the project in the URL."))
			}
			return nil
		}
		if k.r.Header.Get("Authorization") == "" {
			return fail(otcError(http.StatusUnauthorized, "APIG.0301", "Incorrect IAM authentication information: no token or AK/SK signature"))
		}
		c.mu.Lock()
		locked := k.now.Before(c.akLocked)
		c.mu.Unlock()
		claimed, err := verifyAPIG(k.r, k.body, k.now, c.creds.OTCAccessKey, c.creds.OTCSecretKey)
		if claimed == c.creds.OTCAccessKey && locked {
			return fail(otcError(http.StatusUnauthorized, "APIG.0301", "Incorrect IAM authentication information: AK access failed to reach the limit,forbidden"))
		}
		if err != nil {
			c.log.Debug().Str("reason", err.Error()).Msg("otc signature verification failed")
			if claimed == c.creds.OTCAccessKey {
				c.mu.Lock()
				c.akFails++
				if c.akFails >= otcLockAfter {
					c.akFails = 0
					c.akLocked = k.now.Add(otcLockFor)
				}
				c.mu.Unlock()
			}
			return fail(otcError(http.StatusUnauthorized, "APIG.0303", "Incorrect app authentication information: signature verification failed"))
		}
		c.mu.Lock()
		c.akFails = 0
		c.mu.Unlock()
		if project != c.creds.OTCProjectID {
			return fail(otcError(http.StatusForbidden, "ModelArts.0210", "The project does not match the credentials."))
		}
		if pid := k.r.Header.Get("X-Project-Id"); pid != "" && pid != project {
			return fail(otcError(http.StatusForbidden, "ModelArts.0210", "X-Project-Id does not match the project in the URL."))
		}
		return nil
	}
}

// otcTransition applies a start, stop or restart to r, or returns the
// documented wrong-state code.
func otcTransition(r *resource, action string, now time.Time, delay time.Duration) string {
	switch r.state {
	case "FROZEN":
		return "ModelArts.6326"
	case "STARTING", "RESTARTING":
		return "ModelArts.6306"
	case "STOPPING":
		return "ModelArts.6308"
	}
	switch action {
	case "start":
		if r.state == "RUNNING" {
			return "ModelArts.6305"
		}
		r.begin(now, delay, "STARTING", "RUNNING", true)
	case "stop":
		switch r.state {
		case "STOPPED":
			return "ModelArts.6307"
		case "RUNNING", "START_FAILED", "ERROR":
			r.begin(now, delay, "STOPPING", "STOPPED", false)
		default:
			return "ModelArts.6327"
		}
	case "restart":
		if r.state != "RUNNING" {
			return "ModelArts.6327"
		}
		r.begin(now, delay, "RESTARTING", "RUNNING", true)
	default:
		return "ModelArts.0104"
	}
	return ""
}

func otcDemanagerAction(action string) func(c *Cloud, k *call) reply {
	return func(c *Cloud, k *call) reply {
		r := c.resLocked(KindOTCNotebook, k.target, k.now)
		if code := otcTransition(r, action, k.now, c.opts.TransitionDelay); code != "" {
			return otcDEError(http.StatusBadRequest, code, otcMessages[code])
		}
		return jsonReply(http.StatusOK, "", map[string]any{"current_status": r.state, "previous_state": r.prev})
	}
}

func otcNotebooksAction(action string) func(c *Cloud, k *call) reply {
	return func(c *Cloud, k *call) reply {
		r := c.resLocked(KindOTCNotebook, k.target, k.now)
		if code := otcTransition(r, action, k.now, c.opts.TransitionDelay); code != "" {
			return otcError(http.StatusBadRequest, code, otcMessages[code])
		}
		return jsonReply(http.StatusOK, "", otcNotebookView(c, r))
	}
}

func otcGet(api otcAPI) func(c *Cloud, k *call) reply {
	return func(c *Cloud, k *call) reply {
		r := c.resLocked(KindOTCNotebook, k.target, k.now)
		if api == otcNotebooks {
			return jsonReply(http.StatusOK, "", otcNotebookView(c, r))
		}
		return jsonReply(http.StatusOK, "", map[string]any{
			"id": r.id, "name": "notebook-" + r.id, "description": "", "status": r.state,
			"creation_timestamp":      strconv.FormatInt(r.created.UnixMilli(), 10),
			"latest_update_timestamp": strconv.FormatInt(r.updated.UnixMilli(), 10),
			"profile":                 map[string]any{"de_type": "Notebook", "provision_type": "Docker", "flavor_type": "CPU"},
			"flavor":                  "modelarts.vm.cpu.2u",
			"spec":                    map[string]any{"storage": map[string]any{"type": "evs"}},
			"workspace":               map[string]any{"id": "0"},
			"ai_project":              map[string]any{"id": "default-ai-project"},
			"pool":                    map[string]any{"id": "", "name": ""},
			"flavor_details":          map[string]any{"name": "modelarts.vm.cpu.2u", "status": "onSale", "type": "CPU"},
			"error_code":              "",
			"queuing_info":            map[string]any{},
			"user":                    map[string]any{"id": "emu-user", "name": c.creds.OTCUsername},
		})
	}
}

func otcNotebookView(c *Cloud, r *resource) map[string]any {
	return map[string]any{
		"id": r.id, "name": "notebook-" + r.id, "description": "", "status": r.state,
		"feature": "NOTEBOOK", "flavor": "modelarts.vm.cpu.2u",
		"create_at": r.created.UnixMilli(), "update_at": r.updated.UnixMilli(),
		"image":           map[string]any{"name": "notebook-default", "type": "BUILD_IN"},
		"lease":           map[string]any{"create_at": r.updated.UnixMilli(), "duration": 3600000, "enable": true, "type": "timing", "update_at": r.updated.UnixMilli()},
		"action_progress": []any{},
		"workspace":       map[string]any{"id": "0"},
		"user":            map[string]any{"id": "emu-user", "name": c.creds.OTCUsername},
	}
}

// iamTokens is POST /v3/auth/tokens with password identity (vendors.md §4.3).
func iamTokens(c *Cloud, k *call) reply {
	var body struct {
		Auth struct {
			Identity struct {
				Methods  []string `json:"methods"`
				Password struct {
					User struct {
						Name     string `json:"name"`
						Password string `json:"password"`
						Domain   struct {
							Name string `json:"name"`
						} `json:"domain"`
					} `json:"user"`
				} `json:"password"`
			} `json:"identity"`
			Scope *struct {
				Project *struct {
					ID   string `json:"id"`
					Name string `json:"name"`
				} `json:"project"`
			} `json:"scope"`
		} `json:"auth"`
	}
	if err := decodeJSON(k.body, &body); err != nil {
		return keystoneError(http.StatusBadRequest, "Bad Request", "The request body is not valid JSON.")
	}
	u := body.Auth.Identity.Password.User
	if u.Name != c.creds.OTCUsername || u.Password != c.creds.OTCPassword || u.Domain.Name != c.creds.OTCDomain {
		return keystoneError(http.StatusUnauthorized, "Unauthorized", "The username or password is wrong.")
	}
	project := ""
	projectName := ""
	if s := body.Auth.Scope; s != nil && s.Project != nil {
		switch {
		case s.Project.ID == c.creds.OTCProjectID, s.Project.Name == "eu-de", s.Project.Name == "eu-nl":
			project = c.creds.OTCProjectID
			projectName = s.Project.Name
			if projectName == "" {
				projectName = "eu-de"
			}
		default:
			return keystoneError(http.StatusUnauthorized, "Unauthorized", "The project in the scope does not exist.")
		}
	}
	tok := "MIIemu" + randomHex(48)
	exp := k.now.Add(c.opts.TokenLifetime)
	c.iamTokens[tok] = iamToken{expires: exp, projectID: project}
	const layout = "2006-01-02T15:04:05.000000Z"
	domain := map[string]any{"id": "emu-domain", "name": c.creds.OTCDomain}
	tokenBody := map[string]any{
		"expires_at": exp.UTC().Format(layout),
		"issued_at":  k.now.UTC().Format(layout),
		"methods":    []string{"password"},
		"user":       map[string]any{"id": "emu-user", "name": c.creds.OTCUsername, "domain": domain},
		"roles":      []any{map[string]any{"id": "emu-role", "name": "te_admin"}},
		"catalog":    []any{},
	}
	if project != "" {
		tokenBody["project"] = map[string]any{"id": project, "name": projectName, "domain": domain}
	}
	rep := jsonReply(http.StatusCreated, "", map[string]any{"token": tokenBody})
	rep.header = http.Header{"X-Subject-Token": {tok}}
	return rep
}
