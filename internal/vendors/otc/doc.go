// Package otc is the Open Telekom Cloud ModelArts client: it starts and
// stops notebook instances and reads their status (vendors.md §4).
//
// # APIs
//
// Config.API picks the call. "demanager" (the default, seed 004) is the
// historical DevEnviron API, POST /v1/{project_id}/demanager/instances/{id}/action
// with {"action":"start"} or {"action":"stop"}, answering
// {"current_status":"STARTING","previous_state":"STOPPED"}; its status read is
// GET /v1/{project_id}/demanager/instances/{id}. "notebooks" is the current
// API, POST /v1/{project_id}/notebooks/{id}/start and /stop with no body,
// answering the notebook object; its status read is
// GET /v1/{project_id}/notebooks/{id}. Result.State is the status the
// vendor reported.
//
// # Authentication
//
// With auth "aksk" (the default) every request is signed with the APIG
// "SDK-HMAC-SHA256" scheme in its "Access=" form (§4.2). The client signs
// content-type, host, x-project-id and x-sdk-date: the OTC APIG example
// signs the first, second and last, and X-Project-Id is added before
// signing (as the huaweicloud SDK does) so the project is covered too; the
// gateway recomputes over whatever SignedHeaders lists. The body hash is of
// the exact bytes sent. Signer, CanonicalRequest and Verify are exported
// for the emulated cloud and for tests.
//
// With auth "iam" the client fetches a project-scoped token (password
// method, POST {iam}/v3/auth/tokens), keeps it until five minutes before
// its expires_at, and sends it as X-Auth-Token. Concurrent calls share one
// fetch. A token error (ModelArts.0201-0204, 6620, APIG.0307, a 401
// without a known code, and with a token also APIG.0301, "IAM
// authentication information incorrect") drops the token and replays the
// call once with a new one; a second token error is permanent. With aksk
// the same answers are permanent.
//
// # Errors
//
// Every failure is a *vendors.Error whose Message is the vendor's
// error_msg (or error_message, or message, also found in nested objects)
// with any credential of the account removed, and whose RequestID is the
// X-Request-Id response header. classify decides, code before status:
// ModelArts.6305 on start and 6307 on stop are successes with
// Result.Already; throttling (429, APIG.0308, with Retry-After), 408, 5xx,
// gateway errors APIG.0201-0203/0613 and the ModelArts "busy" codes
// (6306, 6308, 6333, 6355, 6357, 6360, 6329, 6716, 6528, 0010) are
// transient; signature and AK/SK errors (APIG.0301/0303, ModelArts.0206)
// are permanent and say so, because five failures lock the AK for five
// minutes; other 4xx are permanent. A 2xx body that cannot be read is a
// permanent error (the call may have been accepted: read the status rather
// than re-issue it); a 5xx stays transient whatever its body. Transport
// failures, the context's deadline included, are transient.
package otc
