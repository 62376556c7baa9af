package vendors

// Kind says what an action does to its target, which decides how the
// executor treats an interrupted call: a start or stop is idempotent by
// state and may be re-issued; a restart or kill is not.
type Kind string

// Kinds of action.
const (
	Start   Kind = "start"
	Stop    Kind = "stop"
	Restart Kind = "restart"
	Kill    Kind = "kill"
)

// ActionInfo describes one catalogue action.
type ActionInfo struct {
	Vendor string // ncp | scnet | otc
	Kind   Kind
	API    string // the vendor call, for help text
}

// Idempotent reports whether re-issuing the action is safe.
func (a ActionInfo) Idempotent() bool { return a.Kind == Start || a.Kind == Stop }

// Catalogue lists every action a job may name (design.md "Action catalogue").
var Catalogue = map[string]ActionInfo{
	"dataforest.notebook.restart": {Vendor: "ncp", Kind: Restart, API: "POST /api/v2/notebooks/restart"},
	"dataforest.aiapp.kill":       {Vendor: "ncp", Kind: Kill, API: "POST /api/v2/aiapps/kill"},
	"dataforest.app.start":        {Vendor: "ncp", Kind: Start, API: "POST /api/v2/apps/start"},
	"dataforest.app.stop":         {Vendor: "ncp", Kind: Stop, API: "POST /api/v2/apps/stop"},
	"cdss.cmak.restart":           {Vendor: "ncp", Kind: Restart, API: "GET /api/{v1,sgn-v1,jpn-v1}/cluster/restartCMAKService/{no}"},
	"cdss.kafka.restart":          {Vendor: "ncp", Kind: Restart, API: "GET /api/{v1,sgn-v1,jpn-v1}/cluster/restartKafkaService/{no}"},
	"cdss.cluster.restart":        {Vendor: "ncp", Kind: Restart, API: "GET /api/{v1,sgn-v1,jpn-v1}/cluster/restartAllServices/{no}"},
	"scnet.notebook.start":        {Vendor: "scnet", Kind: Start, API: "POST /ac/openapi/v2/notebook/actions/start"},
	"scnet.notebook.stop":         {Vendor: "scnet", Kind: Stop, API: "POST /ai/openapi/v2/notebook/actions/stop"},
	"modelarts.notebook.start":    {Vendor: "otc", Kind: Start, API: "POST /v1/{project_id}/demanager/instances/{id}/action {\"action\":\"start\"}"},
	"modelarts.notebook.stop":     {Vendor: "otc", Kind: Stop, API: "POST /v1/{project_id}/demanager/instances/{id}/action {\"action\":\"stop\"}"},
}
