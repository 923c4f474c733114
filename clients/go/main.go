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

// dial opens a TLS 1.3 connection to the CA, presenting a client certificate when one is given.
func dial(address string, roots *x509.CertPool, client *identity) (*grpc.ClientConn, error) {
	config := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: roots}
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
	flag.Parse()
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
	conn, err := dial(*address, roots, nil)
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
	if err := current.write(*out); err != nil {
		return nil, err
	}

	// 2. Renew: mutual TLS with the certificate just issued, and a new key.
	newKey, newCSR, err := newKeyAndCSR()
	if err != nil {
		return nil, err
	}
	conn, err = dial(*address, roots, &current)
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
	conn, err = dial(*address, roots, &current)
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
