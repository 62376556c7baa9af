package schedule

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/cloudcron/scheduler/internal/secret"
)

// Cluster makes the daemon one replica of several, on several hosts, that
// share their run state in etcd (design.md, "Cluster contract"). Without
// it the run state stays in state.dir.
type Cluster struct {
	// Node names this replica in its claims and audit records; default the
	// host name.
	Node string      `yaml:"node"`
	Etcd ClusterEtcd `yaml:"etcd"`
}

// ClusterEtcd says how to reach etcd.
type ClusterEtcd struct {
	Endpoints []string `yaml:"endpoints"`
	// Prefix holds every key of this schedule's run state; default
	// /scheduler/. Replicas of one schedule share it; another schedule on
	// the same etcd needs its own.
	Prefix   string      `yaml:"prefix"`
	TLS      *ClusterTLS `yaml:"tls"`
	Username *secret.Ref `yaml:"username"`
	Password *secret.Ref `yaml:"password"`
	// LeaseTTL is how long a replica that died or lost etcd keeps its
	// claims: survivors take its fires over after it. Default 5s.
	LeaseTTL *Duration `yaml:"lease_ttl"`
	// InsecureHTTP allows plain http endpoints on hosts other than
	// loopback.
	InsecureHTTP bool `yaml:"insecure_http"`
}

// ClusterTLS are the PEM files of the etcd client's TLS: the CA that signs
// etcd's certificates, and this replica's client certificate and key.
type ClusterTLS struct {
	CA   *secret.Ref `yaml:"ca"`
	Cert *secret.Ref `yaml:"cert"`
	Key  *secret.Ref `yaml:"key"`
}

// Cluster defaults and bounds.
const (
	DefaultClusterPrefix = "/scheduler/"
	DefaultLeaseTTL      = 5 * time.Second
	minLeaseTTL          = 2 * time.Second // etcd's least
	maxLeaseTTL          = 5 * time.Minute
)

// TTL returns the lease TTL in force.
func (e *ClusterEtcd) TTL() time.Duration {
	if e.LeaseTTL == nil {
		return DefaultLeaseTTL
	}
	return time.Duration(*e.LeaseTTL)
}

// checkCluster validates cluster: and fills in its defaults.
func (v *validator) checkCluster() {
	c := v.c.Cluster
	if c == nil {
		return
	}
	const base = "cluster"
	if c.Node == "" && !v.present(child(base, "node")) {
		h, err := os.Hostname()
		if err != nil || h == "" {
			v.missingAt(base, child(base, "node"), "missing, and the host name is unknown (%v); set cluster.node to this replica's name", err)
		}
		c.Node = h
	}
	if v.need(base, "node", c.Node == "", "name this replica, e.g. its host name") {
		if msg := NameProblem(c.Node); msg != "" {
			v.errAt(child(base, "node"), "%s", msg)
		} else if strings.Contains(c.Node, "/") {
			v.errAt(child(base, "node"), "node name contains '/'; use letters, digits, '-' and '.'")
		}
	}
	eb := child(base, "etcd")
	e := &c.Etcd
	if v.need(eb, "endpoints", len(e.Endpoints) == 0, "list the etcd cluster's client URLs, e.g. [https://10.0.0.1:2379, https://10.0.0.2:2379, https://10.0.0.3:2379]") {
		schemes := map[string]bool{}
		for i, s := range e.Endpoints {
			p := index(child(eb, "endpoints"), i)
			u, err := url.Parse(s)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Port() == "" ||
				(u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
				v.errAt(p, "%q is not an etcd client URL; write scheme, host and port, e.g. https://10.0.0.1:2379", s)
				continue
			}
			schemes[u.Scheme] = true
			if u.Scheme == "http" && e.TLS != nil {
				v.errAt(p, "%s is plain http but tls: is set; use https:// URLs with tls", s)
			} else if u.Scheme == "http" && !e.InsecureHTTP && !endpointLoopback(u) {
				v.errAt(p, "%s is plain http to a host that is not loopback: run state and credentials would cross the network in clear; "+
					"use https:// with tls:, or set insecure_http: true under cluster.etcd if the network is trusted", s)
			}
		}
		if len(schemes) > 1 {
			v.errAt(child(eb, "endpoints"), "endpoints mix http and https; use one scheme for the whole etcd cluster")
		}
	}
	if e.Prefix == "" && !v.present(child(eb, "prefix")) {
		e.Prefix = DefaultClusterPrefix
	}
	if v.need(eb, "prefix", e.Prefix == "", "e.g. /scheduler/prod/") {
		if !strings.HasPrefix(e.Prefix, "/") {
			v.errAt(child(eb, "prefix"), "prefix %q must begin with '/', e.g. /scheduler/prod/", e.Prefix)
		} else if !strings.HasSuffix(e.Prefix, "/") {
			e.Prefix += "/"
		}
	}
	if e.LeaseTTL != nil {
		if d := time.Duration(*e.LeaseTTL); d < minLeaseTTL || d > maxLeaseTTL || d%time.Second != 0 {
			v.errAt(child(eb, "lease_ttl"), "lease_ttl %s must be whole seconds between %s and %s; default %s", d, minLeaseTTL, maxLeaseTTL, DefaultLeaseTTL)
		}
	}
	if t := e.TLS; t != nil {
		tb := child(eb, "tls")
		if (t.Cert == nil) != (t.Key == nil) {
			f := "key"
			if t.Cert == nil {
				f = "cert"
			}
			v.missingAt(tb, child(tb, f), "missing; a client certificate needs both cert and key")
		}
		if t.CA == nil && t.Cert == nil {
			v.errAt(tb, "tls sets neither ca nor cert/key; remove it to use the system's CAs, or name the files")
		}
	}
	if (e.Username == nil) != (e.Password == nil) {
		f := "password"
		if e.Username == nil {
			f = "username"
		}
		v.missingAt(eb, child(eb, f), "missing; etcd authentication needs both username and password")
	}
	if v.opts.CheckSecrets {
		v.checkClusterSecrets()
	}
}

// checkClusterSecrets resolves the credentials and loads the TLS files,
// reporting each problem at its reference.
func (v *validator) checkClusterSecrets() {
	e := &v.c.Cluster.Etcd
	eb := "cluster.etcd"
	for f, r := range map[string]*secret.Ref{"username": e.Username, "password": e.Password} {
		if r == nil {
			continue
		}
		if _, err := v.opts.Resolver.Resolve(*r); err != nil {
			v.addAt(r.Line, r.Column, child(eb, f), "%s", err.Error())
		}
	}
	if e.TLS != nil {
		if _, err := e.TLS.config(v.opts.Resolver); err != nil {
			r, f := err.ref, err.field
			v.addAt(r.Line, r.Column, child(child(eb, "tls"), f), "%s", err.msg)
		}
	}
}

// tlsError is a problem with one file of ClusterTLS.
type tlsError struct {
	field string
	ref   *secret.Ref
	msg   string
}

// readPEM reads a certificate (public: any file mode) or the key (a secret:
// the resolver's rules).
func readPEM(res secret.Resolver, r *secret.Ref, public bool) ([]byte, error) {
	if public && r.File != "" {
		b, err := os.ReadFile(r.File)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", r.File, unwrapPath(err))
		}
		return b, nil
	}
	v, err := res.Resolve(*r)
	if err != nil {
		return nil, err
	}
	return []byte(v.Reveal()), nil
}

func unwrapPath(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

func (t *ClusterTLS) config(res secret.Resolver) (*tls.Config, *tlsError) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if t.CA != nil {
		b, err := readPEM(res, t.CA, true)
		if err != nil {
			return nil, &tlsError{"ca", t.CA, err.Error()}
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(b) {
			return nil, &tlsError{"ca", t.CA, "holds no PEM certificate; name the CA certificate that signed etcd's server certificates"}
		}
		cfg.RootCAs = pool
	}
	if t.Cert != nil && t.Key != nil {
		cb, err := readPEM(res, t.Cert, true)
		if err != nil {
			return nil, &tlsError{"cert", t.Cert, err.Error()}
		}
		kb, err := readPEM(res, t.Key, false)
		if err != nil {
			return nil, &tlsError{"key", t.Key, err.Error()}
		}
		pair, err := tls.X509KeyPair(cb, kb)
		if err != nil {
			// The error names no key material, only what is wrong.
			return nil, &tlsError{"key", t.Key, "the client certificate and key do not load as a pair (" + err.Error() + "); name the PEM certificate and its private key"}
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// TLSConfig returns the etcd client's TLS configuration: nil for http
// endpoints without tls:, the system's CAs for https without tls:.
func (e *ClusterEtcd) TLSConfig(res secret.Resolver) (*tls.Config, error) {
	if e.TLS == nil {
		if len(e.Endpoints) > 0 && strings.HasPrefix(e.Endpoints[0], "https://") {
			return &tls.Config{MinVersion: tls.VersionTLS12}, nil
		}
		return nil, nil
	}
	cfg, err := e.TLS.config(res)
	if err != nil {
		return nil, fmt.Errorf("cluster.etcd.tls.%s: %s", err.field, err.msg)
	}
	return cfg, nil
}

// Credentials returns the etcd username and password; empty without
// username:.
func (e *ClusterEtcd) Credentials(res secret.Resolver) (user, password secret.Value, err error) {
	if e.Username == nil || e.Password == nil {
		return secret.Value{}, secret.Value{}, nil
	}
	if user, err = res.Resolve(*e.Username); err != nil {
		return user, password, fmt.Errorf("cluster.etcd.username: %w", err)
	}
	if password, err = res.Resolve(*e.Password); err != nil {
		return user, password, fmt.Errorf("cluster.etcd.password: %w", err)
	}
	return user, password, nil
}
