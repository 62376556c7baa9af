package schedule

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloudcron/scheduler/internal/secret"
)

const clusterBase = `version: 1
audit: {path: /tmp/a.jsonl}
state: {dir: /tmp/s}
accounts:
  lab: {vendor: sandbox}
jobs:
  - {name: j, schedule: "@hourly", account: lab, action: scnet.notebook.stop, targets: [nb]}
`

func TestClusterConfig(t *testing.T) {
	host, _ := os.Hostname()
	tests := []struct {
		name    string
		cluster string
		path    string // want a problem at this path; "" = valid
		line    int
		msg     string
		check   func(t *testing.T, c *Cluster)
	}{
		{name: "defaults", cluster: "cluster:\n  etcd: {endpoints: [http://127.0.0.1:2379]}\n",
			check: func(t *testing.T, c *Cluster) {
				if c.Node != host || c.Etcd.Prefix != DefaultClusterPrefix || c.Etcd.TTL() != DefaultLeaseTTL {
					t.Errorf("cluster = node %q prefix %q ttl %v; want the host name %q, %q, %v", c.Node, c.Etcd.Prefix, c.Etcd.TTL(), host, DefaultClusterPrefix, DefaultLeaseTTL)
				}
			}},
		{name: "full", cluster: "cluster:\n  node: host-a\n  etcd:\n    endpoints: [https://10.0.0.1:2379, https://10.0.0.2:2379]\n    prefix: /scheduler/prod\n    lease_ttl: 3s\n    tls: {ca: {file: /etc/ca.pem}, cert: {file: /etc/c.pem}, key: {file: /etc/k.pem}}\n    username: {env: ETCD_USER}\n    password: {env: ETCD_PASSWORD}\n",
			check: func(t *testing.T, c *Cluster) {
				if c.Node != "host-a" || c.Etcd.Prefix != "/scheduler/prod/" || c.Etcd.TTL() != 3*time.Second || len(c.Etcd.Endpoints) != 2 {
					t.Errorf("cluster = %+v", c)
				}
			}},
		{name: "no endpoints", cluster: "cluster:\n  node: a\n  etcd: {prefix: /x/}\n", path: "cluster.etcd.endpoints", line: 10, msg: "missing"},
		{name: "bad endpoint", cluster: "cluster:\n  etcd: {endpoints: [10.0.0.1:2379]}\n", path: "cluster.etcd.endpoints[0]", line: 9, msg: "not an etcd client URL"},
		{name: "cleartext off loopback", cluster: "cluster:\n  etcd: {endpoints: [http://10.0.0.1:2379]}\n", path: "cluster.etcd.endpoints[0]", line: 9, msg: "plain http"},
		{name: "cleartext allowed", cluster: "cluster:\n  etcd: {endpoints: [http://10.0.0.1:2379], insecure_http: true}\n"},
		{name: "http with tls", cluster: "cluster:\n  etcd: {endpoints: [http://127.0.0.1:2379], tls: {ca: {file: /x}}}\n", path: "cluster.etcd.endpoints[0]", msg: "tls"},
		{name: "mixed schemes", cluster: "cluster:\n  etcd: {endpoints: [http://127.0.0.1:2379, https://127.0.0.2:2379]}\n", path: "cluster.etcd.endpoints", msg: "mix"},
		{name: "relative prefix", cluster: "cluster:\n  etcd: {endpoints: [http://127.0.0.1:2379], prefix: scheduler/}\n", path: "cluster.etcd.prefix", msg: "begin with '/'"},
		{name: "cert without key", cluster: "cluster:\n  etcd: {endpoints: [https://e:2379], tls: {cert: {file: /c}}}\n", path: "cluster.etcd.tls.key", msg: "both cert and key"},
		{name: "user without password", cluster: "cluster:\n  etcd: {endpoints: [https://e:2379], username: {env: U}}\n", path: "cluster.etcd.password", msg: "both username and password"},
		{name: "inline password", cluster: "cluster:\n  etcd: {endpoints: [https://e:2379], username: {env: U}, password: hunter2}\n", path: "cluster.etcd.password", msg: "inline"},
		{name: "short ttl", cluster: "cluster:\n  etcd: {endpoints: [https://e:2379], lease_ttl: 500ms}\n", path: "cluster.etcd.lease_ttl", msg: "whole seconds"},
		{name: "node with slash", cluster: "cluster:\n  node: a/b\n  etcd: {endpoints: [https://e:2379]}\n", path: "cluster.node", msg: "'/'"},
		{name: "typo", cluster: "cluster:\n  etcd: {endpoint: [https://e:2379]}\n", path: "cluster.etcd.endpoint", msg: "endpoints"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Load("c.yaml", []byte(clusterBase+tc.cluster), Options{})
			if tc.path == "" {
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				if tc.check != nil {
					tc.check(t, cfg.Cluster)
				}
				return
			}
			var probs Problems
			if !errors.As(err, &probs) {
				t.Fatalf("Load error = %v; want problems at %s", err, tc.path)
			}
			for _, p := range probs {
				var fe *FieldError
				if errors.As(p, &fe) && fe.Path == tc.path && strings.Contains(fe.Msg, tc.msg) && (tc.line == 0 || fe.Line == tc.line) {
					if strings.Contains(err.Error(), "hunter2") {
						t.Errorf("the error shows the inline secret: %v", err)
					}
					return
				}
			}
			t.Fatalf("Load error = %v; want one at %s (line %d) saying %q", err, tc.path, tc.line, tc.msg)
		})
	}
}

// TestClusterTLSFiles: with CheckSecrets the CA, certificate and key are
// loaded; a key readable by others and a file that is no PEM are refused
// at their reference, and TLSConfig builds the client's configuration.
func TestClusterTLSFiles(t *testing.T) {
	dir := t.TempDir()
	caPEM, certPEM, keyPEM := testCert(t)
	write := func(name string, b []byte, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ca := write("ca.pem", caPEM, 0o644)
	cert := write("cert.pem", certPEM, 0o644)
	key := write("key.pem", keyPEM, 0o600)
	open := write("open-key.pem", keyPEM, 0o644)
	junk := write("junk.pem", []byte("not a certificate\n"), 0o644)
	cfg := func(ca, key string) string {
		return clusterBase + "cluster:\n  node: a\n  etcd:\n    endpoints: [https://127.0.0.1:2379]\n    tls: {ca: {file: " + ca + "}, cert: {file: " + cert + "}, key: {file: " + key + "}}\n"
	}
	c, err := Load("c.yaml", []byte(cfg(ca, key)), Options{CheckSecrets: true})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	tc, err := c.Cluster.Etcd.TLSConfig(secret.Resolver{})
	if err != nil || tc.RootCAs == nil || len(tc.Certificates) != 1 {
		t.Fatalf("TLSConfig = %+v, %v; want a CA pool and one client certificate", tc, err)
	}
	for _, bad := range []struct{ ca, key, path, msg string }{
		{ca, open, "cluster.etcd.tls.key", "readable by group or others"},
		{junk, key, "cluster.etcd.tls.ca", "no PEM certificate"},
	} {
		_, err := Load("c.yaml", []byte(cfg(bad.ca, bad.key)), Options{CheckSecrets: true})
		if err == nil || !strings.Contains(err.Error(), bad.path) || !strings.Contains(err.Error(), bad.msg) {
			t.Errorf("Load with %s = %v; want a problem at %s saying %q", bad.path, err, bad.path, bad.msg)
		}
		if err != nil && strings.Contains(err.Error(), "PRIVATE KEY") {
			t.Errorf("the error shows key material: %v", err)
		}
	}
}

// testCert makes a CA and a client certificate signed by it.
func testCert(t *testing.T) (caPEM, certPEM, keyPEM []byte) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "replica"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caTmpl, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}
