// vouch-load drives a certificate authority with one light client, so that on a small machine the
// load generator does not starve the server it measures. Four issuing scenarios, and two of the fleet
// view (report.go, listagents.go):
//
//	vouch-fleet       each worker enrolls its own identity, then renews as agents do: every Renew on a
//	                  NEW TLS 1.3 connection presenting its newest certificate (no session resumption,
//	                  no connection reuse), keeping the returned certificate as the next identity
//	vouch-persistent  one persistent TLS connection per worker, Enroll with a multi-use token in a loop
//	                  (Renew cannot repeat on one connection: only the newest certificate of a lineage
//	                  may renew, and the connection keeps presenting the first one)
//	cfssl-fleet       cfssl serve over HTTPS with a client certificate required: POST
//	                  /api/v1/cfssl/sign on a NEW TLS 1.3 connection per request
//	cfssl-persistent  keep-alive HTTP to cfssl serve's plain listener, POST /api/v1/cfssl/sign
//	vouch-report      -agents identities enrolled and reported once before the clock, then ReportAgent
//	                  from them, each a changed report (a real write), at most one per identity per
//	                  -min-report-interval; -report-modes persistent (a connection per identity, kept
//	                  open) and/or new (a new TLS 1.3 connection per report, as agents report)
//	vouch-list-agents Admin.ListAgents through every page, -repeat times
//
// Keys and CSRs are made before the clock starts. Per concurrency level: warm-up, then a measured
// window; only calls finishing inside it count. Server CPU is read from /proc/PID/stat exactly at the
// window's edges, client CPU from getrusage. Built by scripts/bench.sh in GOPATH mode next to the
// vouchv1 package scripts/setup-go.sh generates.
//
//	vouch-load -scenario vouch-fleet -server 127.0.0.1:8443 -bundle vouch-ca/bundle.pem \
//	    -token-file token.txt -concurrency 1,8,32,128 -server-pid $(pidof vouch)
package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"runtime/debug"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	vouchv1 "example.com/app/vouchv1"
)

// ---- options ---------------------------------------------------------------------------------------

type options struct {
	scenario    string
	server      string
	bundle      string
	cert, key   string
	tokens      []string
	tokenUses   int
	adminCert   string
	adminKey    string
	spiffeID    string
	levels      []int
	warmup      time.Duration
	duration    time.Duration
	serverPID   int
	json        bool
	record      string
	ttlSeconds  int64
	callTimeout time.Duration
	cpuProfile  string

	// vouch-report and vouch-list-agents
	agents            int
	activeAgents      int
	agentsPerID       int
	serviceOffset     int
	reportModes       []string
	seedOnly          bool
	minReportInterval time.Duration
	setupConcurrency  int
	repeat            int
	pageSize          int
}

func parseOptions() (options, error) {
	var o options
	var tokenFile, token, levels, reportModes string
	flag.StringVar(&o.scenario, "scenario", "", "vouch-fleet, vouch-persistent, cfssl-fleet, cfssl-persistent, vouch-report or vouch-list-agents")
	flag.StringVar(&o.server, "server", "", "server HOST:PORT")
	flag.StringVar(&o.bundle, "bundle", "", "PEM roots the server's certificate must chain to (Vouch: bundle.pem; cfssl-fleet: its CA)")
	flag.StringVar(&o.cert, "cert", "", "cfssl-fleet: client certificate chain PEM (leaf first)")
	flag.StringVar(&o.key, "key", "", "cfssl-fleet: client private key PEM")
	flag.StringVar(&token, "token", "", "Vouch: multi-use enrollment token")
	flag.StringVar(&tokenFile, "token-file", "", "Vouch: file of multi-use enrollment tokens, one a line")
	flag.IntVar(&o.tokenUses, "token-uses", 1000, "Vouch: enrollments each given token allows")
	flag.StringVar(&o.adminCert, "admin-cert", "", "Vouch: admin certificate, to create more tokens (Admin.CreateToken) when the given ones are used up")
	flag.StringVar(&o.adminKey, "admin-key", "", "Vouch: admin key for -admin-cert")
	flag.StringVar(&o.spiffeID, "spiffe-id", "spiffe://bench.test/bench/load", "SPIFFE ID of created tokens; URI SAN of cfssl CSRs")
	flag.StringVar(&levels, "concurrency", "1,8,32,128", "comma-separated concurrency levels")
	flag.DurationVar(&o.warmup, "warmup", 2*time.Second, "load before each measured window")
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "measured window per level")
	flag.IntVar(&o.serverPID, "server-pid", 0, "PID of the server, for its CPU over the measured window")
	flag.BoolVar(&o.json, "json", false, "print one JSON line per level instead of a table row")
	flag.StringVar(&o.record, "record", "", "also append each level's JSON line to this file")
	flag.Int64Var(&o.ttlSeconds, "ttl", 3600, "requested certificate lifetime, seconds (Vouch)")
	flag.DurationVar(&o.callTimeout, "call-timeout", 30*time.Second, "deadline of one call")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write the load generator's own CPU profile here (pprof)")
	flag.IntVar(&o.agents, "agents", 2000, "vouch-report: identities to enroll (through -admin-cert's tokens) and report from once before the clock")
	flag.IntVar(&o.activeAgents, "active", 0, "vouch-report: how many of them the measured reports come from (0: all)")
	flag.IntVar(&o.agentsPerID, "agents-per-id", 10, "vouch-report: agents per SPIFFE ID (-spiffe-id/svc-NNNNN, one token each)")
	flag.IntVar(&o.serviceOffset, "service-offset", 0, "vouch-report: number of the first svc-NNNNN (another run's IDs stay apart)")
	flag.StringVar(&reportModes, "report-modes", "persistent", "vouch-report: persistent, new, or both (comma-separated)")
	flag.BoolVar(&o.seedOnly, "seed-only", false, "vouch-report: enroll and report once, measure nothing")
	flag.DurationVar(&o.minReportInterval, "min-report-interval", 1100*time.Millisecond,
		"vouch-report: least time between two reports of one identity (the CA refuses more than 10 changed reports in 10 s per certificate)")
	flag.IntVar(&o.setupConcurrency, "setup-concurrency", 16, "vouch-report: parallel enrollments and first reports")
	flag.IntVar(&o.repeat, "repeat", 5, "vouch-list-agents: timed listings (after one untimed)")
	flag.IntVar(&o.pageSize, "page-size", 1000, "vouch-list-agents: page_size")
	flag.Parse()

	switch o.scenario {
	case "vouch-fleet", "vouch-persistent", "cfssl-fleet", "cfssl-persistent":
	case "vouch-report", "vouch-list-agents":
		if o.adminCert == "" || o.adminKey == "" {
			return o, fmt.Errorf("%s needs -admin-cert and -admin-key", o.scenario)
		}
	default:
		return o, fmt.Errorf("-scenario must be vouch-fleet, vouch-persistent, cfssl-fleet, cfssl-persistent, vouch-report or vouch-list-agents")
	}
	for _, mode := range strings.Split(reportModes, ",") {
		switch mode = strings.TrimSpace(mode); mode {
		case "persistent", "new":
			o.reportModes = append(o.reportModes, mode)
		default:
			return o, fmt.Errorf("-report-modes takes persistent and new, not %q", mode)
		}
	}
	if o.agents <= 0 || o.activeAgents < 0 || o.activeAgents > o.agents || o.agentsPerID <= 0 || o.setupConcurrency <= 0 {
		return o, fmt.Errorf("-agents, -agents-per-id and -setup-concurrency must be positive, -active at most -agents")
	}
	if o.activeAgents == 0 {
		o.activeAgents = o.agents
	}
	if o.repeat <= 0 || o.pageSize <= 0 {
		return o, fmt.Errorf("-repeat and -page-size must be positive")
	}
	if o.server == "" {
		return o, fmt.Errorf("-server is required")
	}
	for _, field := range strings.Split(levels, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(field))
		if err != nil || n <= 0 {
			return o, fmt.Errorf("-concurrency needs positive numbers, got %q", levels)
		}
		o.levels = append(o.levels, n)
	}
	if token != "" {
		o.tokens = append(o.tokens, token)
	}
	if tokenFile != "" {
		data, err := os.ReadFile(tokenFile)
		if err != nil {
			return o, err
		}
		o.tokens = append(o.tokens, strings.Fields(string(data))...)
	}
	vouch := strings.HasPrefix(o.scenario, "vouch-")
	if (vouch || o.scenario == "cfssl-fleet") && o.bundle == "" {
		return o, fmt.Errorf("-bundle is required for %s", o.scenario)
	}
	if vouch && len(o.tokens) == 0 && o.adminCert == "" {
		return o, fmt.Errorf("%s needs -token, -token-file or -admin-cert/-admin-key", o.scenario)
	}
	if o.scenario == "cfssl-fleet" && (o.cert == "" || o.key == "") {
		return o, fmt.Errorf("cfssl-fleet needs -cert and -key (the client certificate)")
	}
	return o, nil
}

// ---- keys and CSRs made before the clock -----------------------------------------------------------

type preparedKey struct {
	index     int
	key       *ecdsa.PrivateKey
	csr       []byte // DER, for Vouch
	cfsslBody []byte // {"certificate_request": PEM}, for cfssl
}

// prepareKeys makes n P-256 keys with their CSRs. Vouch CSRs carry nothing (the token or the
// current certificate decides the names); cfssl CSRs name the identity as its SAN.
func prepareKeys(n int, o options) ([]*preparedKey, error) {
	uri, err := url.Parse(o.spiffeID)
	if err != nil {
		return nil, err
	}
	keys := make([]*preparedKey, n)
	for i := range keys {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		p := &preparedKey{index: i, key: key}
		if strings.HasPrefix(o.scenario, "vouch-") {
			p.csr, err = x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
		} else {
			var der []byte
			der, err = x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
				Subject: pkix.Name{Organization: []string{"bench"}}, URIs: []*url.URL{uri}}, key)
			if err == nil {
				p.cfsslBody, err = json.Marshal(map[string]string{
					"certificate_request": string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))})
			}
		}
		if err != nil {
			return nil, err
		}
		keys[i] = p
	}
	return keys, nil
}

// keyCycle hands a worker the prepared keys in turn, never the key its current certificate holds
// (a renewal needs a new key).
type keyCycle struct {
	keys       []*preparedKey
	next, step int
}

func (c *keyCycle) pick(avoid *ecdsa.PrivateKey) *preparedKey {
	p := c.keys[c.next%len(c.keys)]
	c.next += c.step
	if p.key == avoid {
		p = c.keys[(p.index+1)%len(c.keys)]
	}
	return p
}

// checkIssued parses an issued certificate and checks it certifies the CSR's key.
func checkIssued(der []byte, p *preparedKey) error {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return fmt.Errorf("issued certificate does not parse: %v", err)
	}
	if public, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok || !public.Equal(&p.key.PublicKey) {
		return errors.New("issued certificate is not for the CSR's key")
	}
	return nil
}

// ---- Vouch ----------------------------------------------------------------------------------------

// tokenSupply hands out enrollment tokens, each for its number of uses: the given ones first, then
// ones created through the Admin API when admin credentials are given.
type tokenSupply struct {
	mu        sync.Mutex
	queue     []string
	uses      int
	current   string
	remaining int
	admin     vouchv1.AdminClient
	spiffeID  string
	// perToken > 0: each created token allows perToken enrollments, for its own SPIFFE ID
	// spiffeID/svc-NNNNN (numbered from created), so agents come perToken to a service.
	perToken int
	created  int
}

func (s *tokenSupply) next(ctx context.Context) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.remaining == 0 {
		switch {
		case len(s.queue) > 0:
			s.current, s.queue, s.remaining = s.queue[0], s.queue[1:], s.uses
		case s.admin != nil:
			uses, id := 1000, s.spiffeID
			if s.perToken > 0 {
				uses, id = s.perToken, fmt.Sprintf("%s/svc-%05d", s.spiffeID, s.created)
			}
			created, err := s.admin.CreateToken(ctx, &vouchv1.CreateTokenRequest{SpiffeId: id, Uses: int32(uses), TtlSeconds: 3600})
			if err != nil {
				return "", fmt.Errorf("creating a token: %v", describe(err))
			}
			s.current, s.remaining = created.Token, uses
			s.created++
		default:
			return "", errors.New("enrollment tokens used up (give more with -token-file, or -admin-cert/-admin-key)")
		}
	}
	s.remaining--
	return s.current, nil
}

// retire drops a token the server reports used up, unless another worker already moved on.
func (s *tokenSupply) retire(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.current == token {
		s.remaining = 0
	}
}

type vouchEnv struct {
	o      options
	roots  *x509.CertPool
	tokens *tokenSupply
}

// dial opens a gRPC connection over TLS 1.3; without a session cache Go never resumes a session,
// so every connection does a full handshake.
func (e *vouchEnv) dial(client *tls.Certificate) (*grpc.ClientConn, error) {
	config := &tls.Config{MinVersion: tls.VersionTLS13, RootCAs: e.roots}
	if client != nil {
		config.Certificates = []tls.Certificate{*client}
	}
	return grpc.Dial(e.o.server, grpc.WithTransportCredentials(credentials.NewTLS(config)))
}

// enroll uses the next token; one the server reports used up (it may have served an earlier run
// too) is retired and the call made once more with the following one.
func (e *vouchEnv) enroll(ctx context.Context, ca vouchv1.CertificateAuthorityClient, p *preparedKey) (*vouchv1.CertificateResponse, error) {
	for attempt := 0; ; attempt++ {
		token, err := e.tokens.next(ctx)
		if err != nil {
			return nil, err
		}
		response, err := ca.Enroll(ctx, &vouchv1.EnrollRequest{Token: token, Csr: p.csr, TtlSeconds: e.o.ttlSeconds})
		if err != nil {
			if attempt == 0 && status.Code(err) == codes.Unauthenticated && strings.HasSuffix(status.Convert(err).Message(), "was already used") {
				e.tokens.retire(token)
				continue
			}
			return nil, describe(err)
		}
		return response, checkIssued(response.Certificate, p)
	}
}

// vouchFleetWorker renews as an agent does, each time on a new connection with its newest certificate.
type vouchFleetWorker struct {
	env      *vouchEnv
	keys     keyCycle
	identity *tls.Certificate
	key      *ecdsa.PrivateKey
}

// ready enrolls the worker's identity (before the clock, or again after a failed renewal, which may
// have left the server with a newer certificate of the lineage than the worker holds).
func (w *vouchFleetWorker) ready(ctx context.Context) error {
	if w.identity != nil {
		return nil
	}
	p := w.keys.pick(nil)
	conn, err := w.env.dial(nil)
	if err != nil {
		return err
	}
	defer conn.Close()
	response, err := w.env.enroll(ctx, vouchv1.NewCertificateAuthorityClient(conn), p)
	if err != nil {
		return fmt.Errorf("enrolling the worker's identity: %v", err)
	}
	w.keep(response, p)
	return nil
}

func (w *vouchFleetWorker) keep(response *vouchv1.CertificateResponse, p *preparedKey) {
	w.identity = &tls.Certificate{Certificate: append([][]byte{response.Certificate}, response.Chain...), PrivateKey: p.key}
	w.key = p.key
}

func (w *vouchFleetWorker) issue(ctx context.Context) error {
	p := w.keys.pick(w.key)
	conn, err := w.env.dial(w.identity)
	if err != nil {
		w.identity = nil
		return err
	}
	response, err := vouchv1.NewCertificateAuthorityClient(conn).Renew(ctx, &vouchv1.RenewRequest{Csr: p.csr, TtlSeconds: w.env.o.ttlSeconds})
	conn.Close()
	if err == nil {
		err = checkIssued(response.Certificate, p)
	}
	if err != nil {
		w.identity = nil
		return describe(err)
	}
	w.keep(response, p)
	return nil
}

func (w *vouchFleetWorker) close() {}

// vouchPersistentWorker enrolls again and again on one connection.
type vouchPersistentWorker struct {
	env  *vouchEnv
	keys keyCycle
	conn *grpc.ClientConn
	ca   vouchv1.CertificateAuthorityClient
}

func (w *vouchPersistentWorker) ready(ctx context.Context) error {
	if w.conn != nil {
		return nil
	}
	conn, err := w.env.dial(nil)
	if err != nil {
		return err
	}
	w.conn, w.ca = conn, vouchv1.NewCertificateAuthorityClient(conn)
	return nil
}

func (w *vouchPersistentWorker) issue(ctx context.Context) error {
	_, err := w.env.enroll(ctx, w.ca, w.keys.pick(nil))
	return err
}

func (w *vouchPersistentWorker) close() {
	if w.conn != nil {
		w.conn.Close()
	}
}

// ---- cfssl ----------------------------------------------------------------------------------------

type cfsslWorker struct {
	client *http.Client
	url    string
	keys   keyCycle
}

func (w *cfsslWorker) ready(context.Context) error { return nil }

func (w *cfsslWorker) issue(ctx context.Context) error {
	p := w.keys.pick(nil)
	request, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(p.cfsslBody))
	if err != nil {
		return err
	}
	request.Header.Set("Content-Type", "application/json")
	response, err := w.client.Do(request)
	if err != nil {
		return err
	}
	body, err := io.ReadAll(response.Body)
	response.Body.Close()
	if err != nil {
		return err
	}
	var answer struct {
		Success bool `json:"success"`
		Result  struct {
			Certificate string `json:"certificate"`
		} `json:"result"`
		Errors []struct {
			Message string `json:"message"`
		} `json:"errors"`
	}
	if err := json.Unmarshal(body, &answer); err != nil {
		return fmt.Errorf("HTTP %d, body not JSON: %.200s", response.StatusCode, body)
	}
	if response.StatusCode != http.StatusOK || !answer.Success {
		return fmt.Errorf("HTTP %d, success %v: %+v", response.StatusCode, answer.Success, answer.Errors)
	}
	block, _ := pem.Decode([]byte(answer.Result.Certificate))
	if block == nil {
		return errors.New("success without a PEM certificate")
	}
	return checkIssued(block.Bytes, p)
}

func (w *cfsslWorker) close() { w.client.CloseIdleConnections() }

// ---- load -----------------------------------------------------------------------------------------

type worker interface {
	ready(ctx context.Context) error // outside the timed call: set up or recover the worker's state
	issue(ctx context.Context) error // one timed certificate
	close()
}

type outcome struct {
	latencies []time.Duration
	failed    int
	firstErr  string
}

// cpuSeconds reads utime+stime of a process.
func cpuSeconds(pid int, tick float64) (float64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which sits in parentheses and may hold spaces.
	fields := strings.Fields(string(data[bytes.LastIndexByte(data, ')')+1:]))
	if len(fields) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	utime, _ := strconv.ParseFloat(fields[11], 64)
	stime, _ := strconv.ParseFloat(fields[12], 64)
	return (utime + stime) / tick, nil
}

func selfCPUSeconds() float64 {
	var usage syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &usage)
	return time.Duration(usage.Utime.Nano() + usage.Stime.Nano()).Seconds()
}

func clockTick() float64 {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if n, perr := strconv.ParseFloat(strings.TrimSpace(string(out)), 64); err == nil && perr == nil && n > 0 {
		return n
	}
	return 100
}

type window struct {
	serverCPU, clientCPU float64
	serverErr            error
}

// row is one level's result. For vouch-report a "cert" is a report: completed calls of the scenario.
type row struct {
	Scenario               string   `json:"scenario"`
	Concurrency            int      `json:"concurrency"`
	Seconds                float64  `json:"seconds"`
	Completed              int      `json:"completed"`
	CertsPerSecond         float64  `json:"certsPerSecond"`
	P50Ms                  float64  `json:"p50Ms"`
	P99Ms                  float64  `json:"p99Ms"`
	MaxMs                  float64  `json:"maxMs"`
	Failed                 int      `json:"failed"`
	FirstError             string   `json:"firstError,omitempty"`
	ServerCPUPercent       *float64 `json:"serverCPUPercent,omitempty"`
	ServerCPUMicrosPerCert *float64 `json:"serverCPUMicrosPerCert,omitempty"`
	ClientCPUPercent       float64  `json:"clientCPUPercent"`
	// vouch-report: the identities reporting, and how often a worker waited for one to be allowed
	// another report (many: more identities would report faster).
	Identities int    `json:"identities,omitempty"`
	Paced      *int64 `json:"paced,omitempty"`
}

type load struct {
	o         options
	keys      []*preparedKey
	newWorker func(id, concurrency int) worker
	tick      float64
	// finish, when set, adds a scenario's own figures to a level's row.
	finish func(r *row)
}

func (l *load) runLevel(concurrency int) (row, error) {
	workers := make([]worker, concurrency)
	setupErrors := make([]error, concurrency)
	var setup sync.WaitGroup
	for i := range workers {
		workers[i] = l.newWorker(i, concurrency)
		setup.Add(1)
		go func(i int) {
			defer setup.Done()
			ctx, cancel := context.WithTimeout(context.Background(), l.o.callTimeout)
			defer cancel()
			setupErrors[i] = workers[i].ready(ctx)
		}(i)
	}
	setup.Wait()
	defer func() {
		for _, w := range workers {
			w.close()
		}
	}()
	for _, err := range setupErrors {
		if err != nil {
			return row{}, err
		}
	}

	start := time.Now()
	from, until := start.Add(l.o.warmup), start.Add(l.o.warmup+l.o.duration)
	sampled := make(chan window, 1)
	go func() {
		var before, after window
		time.Sleep(time.Until(from))
		before.clientCPU = selfCPUSeconds()
		if l.o.serverPID > 0 {
			before.serverCPU, before.serverErr = cpuSeconds(l.o.serverPID, l.tick)
		}
		time.Sleep(time.Until(until))
		after.clientCPU = selfCPUSeconds()
		if l.o.serverPID > 0 {
			after.serverCPU, after.serverErr = cpuSeconds(l.o.serverPID, l.tick)
		}
		if after.serverErr == nil {
			after.serverErr = before.serverErr
		}
		sampled <- window{serverCPU: after.serverCPU - before.serverCPU, clientCPU: after.clientCPU - before.clientCPU, serverErr: after.serverErr}
	}()

	outcomes := make([]outcome, concurrency)
	var running sync.WaitGroup
	for i, w := range workers {
		running.Add(1)
		go func(w worker, out *outcome) {
			defer running.Done()
			fail := func(err error) {
				out.failed++
				if out.firstErr == "" {
					out.firstErr = err.Error()
				}
				time.Sleep(10 * time.Millisecond)
			}
			for time.Now().Before(until) {
				ctx, cancel := context.WithTimeout(context.Background(), l.o.callTimeout)
				if err := w.ready(ctx); err != nil {
					cancel()
					fail(err)
					continue
				}
				began := time.Now()
				err := w.issue(ctx)
				ended := time.Now()
				cancel()
				if err != nil {
					fail(err)
				} else if !ended.Before(from) && !ended.After(until) {
					out.latencies = append(out.latencies, ended.Sub(began))
				}
			}
		}(w, &outcomes[i])
	}
	running.Wait()
	cpu := <-sampled

	var total outcome
	for _, out := range outcomes {
		total.latencies = append(total.latencies, out.latencies...)
		total.failed += out.failed
		if total.firstErr == "" {
			total.firstErr = out.firstErr
		}
	}
	sort.Slice(total.latencies, func(a, b int) bool { return total.latencies[a] < total.latencies[b] })
	seconds := l.o.duration.Seconds()
	r := row{Scenario: l.o.scenario, Concurrency: concurrency, Seconds: seconds, Completed: len(total.latencies),
		CertsPerSecond: float64(len(total.latencies)) / seconds, Failed: total.failed, FirstError: total.firstErr,
		ClientCPUPercent: cpu.clientCPU / seconds * 100}
	if n := len(total.latencies); n > 0 {
		ms := func(q float64) float64 { return float64(total.latencies[int(q*float64(n-1))]) / 1e6 }
		r.P50Ms, r.P99Ms, r.MaxMs = ms(0.50), ms(0.99), ms(1)
	}
	if l.o.serverPID > 0 && cpu.serverErr == nil {
		percent := cpu.serverCPU / seconds * 100
		r.ServerCPUPercent = &percent
		if r.Completed > 0 {
			micros := cpu.serverCPU / float64(r.Completed) * 1e6
			r.ServerCPUMicrosPerCert = &micros
		}
	}
	if l.finish != nil {
		l.finish(&r)
	}
	return r, nil
}

const header = "scenario          conc  certs/s   p50 ms   p99 ms   max ms  failed  server CPU  server µs/cert  client CPU"

func (r row) String() string {
	optional := func(v *float64, format string) string {
		if v == nil {
			return "-"
		}
		return fmt.Sprintf(format, *v)
	}
	line := fmt.Sprintf("%-16s %5d %8.1f %8.2f %8.2f %8.2f %7d %11s %15s %10.1f%%", r.Scenario, r.Concurrency, r.CertsPerSecond,
		r.P50Ms, r.P99Ms, r.MaxMs, r.Failed, optional(r.ServerCPUPercent, "%.1f%%"), optional(r.ServerCPUMicrosPerCert, "%.0f"),
		r.ClientCPUPercent)
	if r.Paced != nil {
		line += fmt.Sprintf("  paced %d", *r.Paced)
	}
	if r.FirstError != "" {
		line += "  first error: " + r.FirstError
	}
	return line
}

// ---- setup ----------------------------------------------------------------------------------------

// describe turns a gRPC error into "Code: message".
func describe(err error) error {
	if s, ok := status.FromError(err); ok && err != nil {
		return fmt.Errorf("%s: %s", s.Code(), s.Message())
	}
	return err
}

func readRoots(path string) (*x509.CertPool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(data) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return roots, nil
}

func newLoad(o options) (*load, error) {
	maxLevel := 0
	for _, level := range o.levels {
		if level > maxLevel {
			maxLevel = level
		}
	}
	count := 256
	if 2*maxLevel > count {
		count = 2 * maxLevel
	}
	keys, err := prepareKeys(count, o)
	if err != nil {
		return nil, err
	}
	l := &load{o: o, keys: keys, tick: clockTick()}
	cycle := func(id, concurrency int) keyCycle { return keyCycle{keys: keys, next: id, step: concurrency} }

	switch o.scenario {
	case "vouch-fleet", "vouch-persistent":
		roots, err := readRoots(o.bundle)
		if err != nil {
			return nil, err
		}
		env := &vouchEnv{o: o, roots: roots, tokens: &tokenSupply{queue: o.tokens, uses: o.tokenUses, spiffeID: o.spiffeID}}
		if o.adminCert != "" {
			admin, err := tls.LoadX509KeyPair(o.adminCert, o.adminKey)
			if err != nil {
				return nil, fmt.Errorf("admin credentials: %v", err)
			}
			conn, err := env.dial(&admin)
			if err != nil {
				return nil, err
			}
			env.tokens.admin = vouchv1.NewAdminClient(conn)
		}
		if o.scenario == "vouch-fleet" {
			l.newWorker = func(id, c int) worker { return &vouchFleetWorker{env: env, keys: cycle(id, c)} }
		} else {
			l.newWorker = func(id, c int) worker { return &vouchPersistentWorker{env: env, keys: cycle(id, c)} }
		}
	case "cfssl-fleet":
		roots, err := readRoots(o.bundle)
		if err != nil {
			return nil, err
		}
		client, err := tls.LoadX509KeyPair(o.cert, o.key)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %v", err)
		}
		// A new connection per request, each with a full TLS 1.3 handshake (no session cache).
		transport := &http.Transport{DisableKeepAlives: true, TLSClientConfig: &tls.Config{
			MinVersion: tls.VersionTLS13, RootCAs: roots, Certificates: []tls.Certificate{client}}}
		httpClient := &http.Client{Transport: transport, Timeout: o.callTimeout}
		l.newWorker = func(id, c int) worker {
			return &cfsslWorker{client: httpClient, url: "https://" + o.server + "/api/v1/cfssl/sign", keys: cycle(id, c)}
		}
	case "cfssl-persistent":
		l.newWorker = func(id, c int) worker {
			// Its own transport per worker: one keep-alive connection each.
			transport := &http.Transport{MaxIdleConnsPerHost: 1, DisableCompression: true}
			return &cfsslWorker{client: &http.Client{Transport: transport, Timeout: o.callTimeout},
				url: "http://" + o.server + "/api/v1/cfssl/sign", keys: cycle(id, c)}
		}
	}
	return l, nil
}

// output prints each result as a table row or a JSON line, and appends the JSON to -record.
type output struct {
	json   bool
	record *os.File
}

func (out *output) emit(result interface{}, text string) error {
	line, err := json.Marshal(result)
	if err != nil {
		return err
	}
	if out.json {
		fmt.Println(string(line))
	} else {
		fmt.Println(text)
	}
	if out.record != nil {
		_, err = out.record.Write(append(line, '\n'))
	}
	return err
}

func run() error {
	o, err := parseOptions()
	if err != nil {
		return err
	}
	if o.cpuProfile != "" {
		profile, err := os.Create(o.cpuProfile)
		if err != nil {
			return err
		}
		pprof.StartCPUProfile(profile)
		defer pprof.StopCPUProfile()
	}
	out := &output{json: o.json}
	if o.record != "" {
		if out.record, err = os.OpenFile(o.record, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644); err != nil {
			return err
		}
		defer out.record.Close()
	}
	switch o.scenario {
	case "vouch-report":
		return runReports(o, out)
	case "vouch-list-agents":
		return runListAgents(o, out)
	}
	l, err := newLoad(o)
	if err != nil {
		return err
	}
	if !o.json {
		fmt.Println(header)
	}
	for _, level := range o.levels {
		r, err := l.runLevel(level)
		if err != nil {
			return fmt.Errorf("%s at concurrency %d: %v", o.scenario, level, err)
		}
		if err := out.emit(r, r.String()); err != nil {
			return err
		}
	}
	return nil
}

func main() {
	// Fewer collections: the heap stays small, and every cycle is CPU taken from the server's cores.
	debug.SetGCPercent(400)
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "vouch-load: %v\n", err)
		os.Exit(1)
	}
}
