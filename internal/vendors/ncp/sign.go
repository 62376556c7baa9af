package ncp

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
)

// Header names of the NCP API Gateway (vendors.md §1.1).
const (
	headerTimestamp = "x-ncp-apigw-timestamp"
	headerAccessKey = "x-ncp-iam-access-key"
	headerSignature = "x-ncp-apigw-signature-v2"
)

// stringToSign builds the signature v2 message: method, a space, the
// request URI, then the timestamp and the access key on their own lines.
func stringToSign(method, requestURI, timestampMS, accessKey string) string {
	return method + " " + requestURI + "\n" + timestampMS + "\n" + accessKey
}

// Sign returns the NCP API Gateway signature v2 of a request: the standard
// base64 encoding of HMAC-SHA256, keyed with secretKey, over
// "METHOD REQUEST_URI\nTIMESTAMP_MS\nACCESS_KEY". requestURI is the path
// plus "?query" if any, exactly as sent (no scheme or host); timestampMS is
// the same decimal string sent in x-ncp-apigw-timestamp. The body is not
// signed.
func Sign(method, requestURI, timestampMS, accessKey, secretKey string) string {
	mac := hmac.New(sha256.New, []byte(secretKey))
	mac.Write([]byte(stringToSign(method, requestURI, timestampMS, accessKey)))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}
