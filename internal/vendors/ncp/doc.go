// Package ncp is the NAVER Cloud Platform client for Data Forest and Cloud
// Data Streaming Service (CDSS): the calls the scheduler's ncp actions make
// (notebook restart, AI app kill, app start/stop, CMAK/Kafka/all-services
// restart) and the status reads used to verify them.
//
// Every request carries the API Gateway headers x-ncp-apigw-timestamp,
// x-ncp-iam-access-key and x-ncp-apigw-signature-v2 (signature v2, see
// Sign), computed afresh for each call over exactly the request URI that is
// sent. Ids that appear in a path are restricted to unreserved URI
// characters, so what is signed never depends on percent-encoding.
//
// Responses are classified by Classify, a pure function of the envelope
// kind, the HTTP status and the body: transport failures, HTTP 429, 408 and
// 5xx are transient (Retry-After is carried in *vendors.Error); every other
// failure, including a 200 whose body says "no" (Data Forest
// "success":false, CDSS a non-zero code or a result other than true) or
// cannot be understood, is permanent. Every failure is a *vendors.Error
// whose Op names the call and its target; neither the access key nor the
// secret key ever appears in it.
//
// The client does not follow redirects (a redirect would carry the signed
// headers to a URI they were not signed for) and retries nothing itself:
// retries, rate limits and timeouts belong to the caller's ctx and policy.
package ncp
