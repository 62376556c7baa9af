package daemon

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/cloudcron/scheduler/internal/state/etcdstore/etcdtest"
)

// testCA is a certificate authority made for one test.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// issue writes a certificate for usage signed by ca, and its key (mode
// 0600), into dir as name.pem and name-key.pem.
func (ca *testCA) issue(t *testing.T, dir, name string, usage x509.ExtKeyUsage) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+"-key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// TestClusterTLS: a real etcd that serves clients over TLS and requires a
// client certificate (as in the README's three-node setup, with
// certificates made here). A replica with the right CA and a client
// certificate connects and leads; one whose CA did not sign etcd's
// certificate, or whose client certificate etcd does not trust, is
// refused at start with an error that says which and what to check.
func TestClusterTLS(t *testing.T) {
	certs := t.TempDir()
	ca, other := newTestCA(t, "etcd-ca"), newTestCA(t, "some-other-ca")
	srvCert, srvKey := ca.issue(t, certs, "etcd-server", x509.ExtKeyUsageServerAuth)
	caFile, otherCA := filepath.Join(certs, "ca.pem"), filepath.Join(certs, "other-ca.pem")
	if err := os.WriteFile(caFile, ca.pem, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(otherCA, other.pem, 0o644); err != nil {
		t.Fatal(err)
	}
	srv := etcdtest.StartTLS(t, etcdtest.TLSFiles{Cert: srvCert, Key: srvKey, CA: caFile})
	if !strings.HasPrefix(srv.Endpoint(), "https://") {
		t.Fatalf("etcd endpoint %s; want https", srv.Endpoint())
	}
	clientCert, clientKey := ca.issue(t, certs, "host-a", x509.ExtKeyUsageClientAuth)
	strangerCert, strangerKey := other.issue(t, certs, "stranger", x509.ExtKeyUsageClientAuth)

	start := func(caPath, cert, key string) (*Daemon, error) {
		dir := t.TempDir()
		path := filepath.Join(dir, "scheduler.yaml")
		writeConfig(t, path, "version: 1\ntimezone: UTC\naudit: {path: audit.jsonl}\nstate: {dir: state}\n"+
			"cluster:\n  node: host-a\n  etcd:\n    endpoints: ["+srv.Endpoint()+"]\n    prefix: /tls/\n    lease_ttl: 2s\n"+
			"    tls: {ca: {file: "+caPath+"}, cert: {file: "+cert+"}, key: {file: "+key+"}}\n"+
			"accounts:\n  sb: {vendor: sandbox}\njobs:\n"+
			"  - {name: on, schedule: \"0 9 1 1 *\", account: sb, action: modelarts.notebook.start, targets: [nb-1]}\n")
		status := make(chan string, 16)
		d, err := Start(Options{ConfigPath: path, Log: zerolog.Nop(), Grace: 5 * time.Second,
			OnCluster: func(st Status) { status <- st.String() }})
		if err != nil {
			return nil, err
		}
		t.Cleanup(func() { _ = d.Shutdown() })
		select {
		case s := <-status:
			if !strings.Contains(s, "cluster leader") {
				t.Errorf("first cluster status over TLS = %q; want leader", s)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("not elected within 10s over TLS; status %q", d.Status())
		}
		return d, nil
	}

	if _, err := start(caFile, clientCert, clientKey); err != nil {
		t.Fatalf("start with the right CA and client certificate: %v", err)
	}

	_, err := start(otherCA, clientCert, clientKey)
	if err == nil {
		t.Fatal("a replica trusting another CA connected to etcd")
	}
	for _, want := range []string{srv.Endpoint(), "certificate signed by unknown authority", "cluster.etcd.tls.ca"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("wrong CA: error %q does not say %q", err, want)
		}
	}
	t.Logf("wrong CA: %v", err)

	_, err = start(caFile, strangerCert, strangerKey)
	if err == nil {
		t.Fatal("a replica whose client certificate etcd does not trust connected")
	}
	for _, want := range []string{srv.Endpoint(), "client certificate", "cluster.etcd.tls.cert"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("untrusted client certificate: error %q does not say %q", err, want)
		}
	}
	t.Logf("untrusted client certificate: %v", err)
}
