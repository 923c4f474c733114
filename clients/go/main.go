// Vouch from Go: enroll with a one-time token, renew over mutual TLS, revoke.
//
// Works from the committed .proto alone: scripts/setup-go.sh generates package vouchv1 with
// protoc-gen-go and protoc-gen-go-grpc (the command README shows) and builds this program into
// .build/go/bin/vouch-example.
//
//	.build/go/bin/vouch-example --ca 127.0.0.1:8443 --bundle vouch-ca/bundle.pem \
//	    --token-file token.txt --out /tmp/go-identity
//
// Prints one JSON object describing what happened; exits 1 with a one-line reason on failure.
//
// The CA server must present, besides a certificate chaining to the bundle for the dialed host,
// the SPIFFE ID of the Vouch server: --server-spiffe-id, else spiffe://<--trust-domain>/vouch/server,
// else (before enrollment) spiffe://<any trust domain>/vouch/server and, once enrolled, the one of the
// trust domain the CA issued us. Any other certificate of the same CA (a workload's with the CA's
// host name or IP) is refused at the handshake, before the token is sent.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"flag"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	vouchv1 "example.com/app/vouchv1"
)

// newKeyAndCSR makes a fresh P-256 key and a CSR for it. Without SANs, the CA grants what the token allows.
func newKeyAndCSR() (*ecdsa.PrivateKey, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	return key, csr, err
}

// identity is a certificate chain (leaf first, DER) with its key, as TLS and as PEM files.
type identity struct {
	key   *ecdsa.PrivateKey
	chain [][]byte
}

func fromResponse(key *ecdsa.PrivateKey, response *vouchv1.CertificateResponse) identity {
	return identity{key: key, chain: append([][]byte{response.Certificate}, response.Chain...)}
}

func (id identity) tlsCertificate() tls.Certificate {
	return tls.Certificate{Certificate: id.chain, PrivateKey: id.key}
}

// write stores svid.pem and svid_key.pem (PKCS#8), readable by the owner only, each replaced atomically.
func (id identity) write(directory string) error {
	var chain strings.Builder
	for _, der := range id.chain {
		chain.Write(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(id.key)
	if err != nil {
		return err
	}
	if err := writePrivate(filepath.Join(directory, "svid_key.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})); err != nil {
		return err
	}
	return writePrivate(filepath.Join(directory, "svid.pem"), []byte(chain.String()))
}

func writePrivate(path string, data []byte) error {
	temporary := path + ".tmp"
	file, err := os.OpenFile(temporary, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := file.Write(data); err != nil {
		file.Close()
		return err
	}
	if err := file.Sync(); err != nil {
		file.Close()
		return err
	}
	if err := file.Close(); err != nil {
		return err
	}
	return os.Rename(temporary, path)
}

func describe(response *vouchv1.CertificateResponse) map[string]interface{} {
	return map[string]interface{}{"serial": response.Serial, "spiffe_id": response.SpiffeId, "not_after": response.NotAfter}
}

// vouchServerPath is the path of the CA server's SPIFFE ID; Vouch issues it to no workload.
const vouchServerPath = "/vouch/server"

// serverIdentity is the SPIFFE ID the CA server must present: exact when id is set, else
// spiffe://<trustDomain>/vouch/server, else that path in any trust domain.
type serverIdentity struct {
	id, trustDomain string
}

func (s serverIdentity) String() string {
	switch {
	case s.id != "":
		return s.id
	case s.trustDomain != "":
		return "spiffe://" + s.trustDomain + vouchServerPath
	default:
		return "spiffe://<trust domain>" + vouchServerPath
	}
}

func (s serverIdentity) accepts(presented string) bool {
	if s.id != "" || s.trustDomain != "" {
		return presented == s.String()
	}
	u, err := url.Parse(presented)
	return err == nil && u.Scheme == "spiffe" && u.Host != "" && u.Path == vouchServerPath && u.RawQuery == "" && u.Fragment == ""
}

// trustDomainOf returns the trust domain of a SPIFFE ID ("" if it is not one).
func trustDomainOf(spiffeID string) string {
	u, err := url.Parse(spiffeID)
	if err != nil || u.Scheme != "spiffe" {
		return ""
	}
	return u.Host
}

// verifyServerID runs after Go's own chain and host name verification: the leaf must carry
// exactly one SPIFFE ID, the expected one.
func (s serverIdentity) verifyServerID(state tls.ConnectionState) error {
	if len(state.PeerCertificates) == 0 {
		return fmt.Errorf("CA server presented no certificate")
	}
	var ids []string
	for _, uri := range state.PeerCertificates[0].URIs {
		if uri.Scheme == "spiffe" {
			ids = append(ids, uri.String())
		}
	}
	if len(ids) != 1 {
		return fmt.Errorf("CA server certificate carries %d SPIFFE IDs %v, expected exactly %s", len(ids), ids, s)
	}
	if !s.accepts(ids[0]) {
		return fmt.Errorf("CA server presented SPIFFE ID %s, expected %s: not the Vouch CA server", ids[0], s)
	}
	return nil
}

// dial opens a TLS 1.3 connection to the CA, checking its SPIFFE ID and presenting a client
// certificate when one is given.
func dial(address string, roots *x509.CertPool, server serverIdentity, client *identity) (*grpc.ClientConn, error) {
	config := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: roots, VerifyConnection: server.verifyServerID}
	if client != nil {
		config.Certificates = []tls.Certificate{client.tlsCertificate()}
	}
	return grpc.Dial(address, grpc.WithTransportCredentials(credentials.NewTLS(config)))
}

func run() (map[string]interface{}, error) {
	address := flag.String("ca", "", "CA server HOST:PORT")
	bundle := flag.String("bundle", "", "trust bundle PEM (bundle.pem from vouch ca init)")
	tokenFile := flag.String("token-file", "", "file holding a one-time enrollment token")
	out := flag.String("out", "", "directory for svid.pem and svid_key.pem")
	ttl := flag.Int64("ttl", 3600, "certificate lifetime in seconds")
	serverID := flag.String("server-spiffe-id", "", "SPIFFE ID the CA server must present (default spiffe://<trust domain>/vouch/server)")
	trustDomain := flag.String("trust-domain", "", "trust domain of the CA (default: any before enrollment, then the enrolled one's)")
	flag.Parse()
	server := serverIdentity{id: *serverID, trustDomain: *trustDomain}
	if *address == "" || *bundle == "" || *tokenFile == "" || *out == "" {
		return nil, fmt.Errorf("--ca, --bundle, --token-file and --out are required")
	}
	bundlePEM, err := os.ReadFile(*bundle)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(bundlePEM) {
		return nil, fmt.Errorf("%s holds no PEM certificate", *bundle)
	}
	token, err := os.ReadFile(*tokenFile)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(*out, 0o700); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	result := map[string]interface{}{}

	// 1. Enroll: server-authenticated TLS, the token proves who we are.
	key, csr, err := newKeyAndCSR()
	if err != nil {
		return nil, err
	}
	conn, err := dial(*address, roots, server, nil)
	if err != nil {
		return nil, err
	}
	enrolled, err := vouchv1.NewCertificateAuthorityClient(conn).Enroll(ctx, &vouchv1.EnrollRequest{
		Token: strings.TrimSpace(string(token)), Csr: csr, TtlSeconds: *ttl})
	conn.Close()
	if err != nil {
		return nil, err
	}
	current := fromResponse(key, enrolled)
	result["enrolled"] = describe(enrolled)
	if server.id == "" && server.trustDomain == "" {
		// From now on, the Vouch server of the trust domain we were enrolled in.
		server.trustDomain = trustDomainOf(enrolled.SpiffeId)
	}
	if err := current.write(*out); err != nil {
		return nil, err
	}

	// 2. Renew: mutual TLS with the certificate just issued, and a new key.
	newKey, newCSR, err := newKeyAndCSR()
	if err != nil {
		return nil, err
	}
	conn, err = dial(*address, roots, server, &current)
	if err != nil {
		return nil, err
	}
	renewed, err := vouchv1.NewCertificateAuthorityClient(conn).Renew(ctx, &vouchv1.RenewRequest{Csr: newCSR, TtlSeconds: *ttl})
	conn.Close()
	if err != nil {
		return nil, err
	}
	current = fromResponse(newKey, renewed)
	result["renewed"] = describe(renewed)
	if err := current.write(*out); err != nil {
		return nil, err
	}

	// 3. Revoke our own certificate (reason 4 = superseded), authenticated by that certificate.
	conn, err = dial(*address, roots, server, &current)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	client := vouchv1.NewCertificateAuthorityClient(conn)
	revoked, err := client.Revoke(ctx, &vouchv1.RevokeRequest{Serial: renewed.Serial, Reason: 4})
	if err != nil {
		return nil, err
	}
	result["revoked"] = map[string]interface{}{"serial": revoked.Serial, "reason": 4}

	// 4. The CA now refuses that certificate, even on the connection it was opened with.
	_, anotherCSR, err := newKeyAndCSR()
	if err != nil {
		return nil, err
	}
	if _, err := client.Renew(ctx, &vouchv1.RenewRequest{Csr: anotherCSR}); err != nil {
		result["renew_after_revoke"] = status.Code(err).String()
	} else {
		result["renew_after_revoke"] = "OK"
	}
	return result, nil
}

func main() {
	result, err := run()
	if err != nil {
		if s, ok := status.FromError(err); ok {
			fmt.Fprintf(os.Stderr, "vouch-example: %s: %s\n", s.Code(), s.Message())
		} else {
			fmt.Fprintf(os.Stderr, "vouch-example: %v\n", err)
		}
		os.Exit(1)
	}
	encoded, _ := json.Marshal(result)
	fmt.Println(string(encoded))
}
