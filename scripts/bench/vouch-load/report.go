package main

// vouch-report: what agents' fleet reports (CertificateAuthority.ReportAgent) cost the CA.
//
// Before the clock: -agents identities are enrolled (tokens created through the Admin API, one per
// -agents-per-id agents of a service spiffe://…/svc-NNNNN), and each reports once, as a new agent's
// first report does (the CA walks its lineage and inserts its row). Then, per mode and concurrency
// level, the workers share the first -active identities and send ReportAgent from them, each report
// with `rotations` one higher than the identity's last, so none is an identical repeat the CA would
// acknowledge without a write. The CA refuses more than 10 changed reports in 10 s per certificate:
// an identity reports again only -min-report-interval (1.1 s) after its last report ended, so at most
// 10 land in any 10 s; a worker that must wait counts it in "paced" (outside the timed call).
//
//	persistent  each identity's own connection, opened before the mode's levels (with a report) and
//	            closed after them: the report alone
//	new         a new TLS 1.3 connection per report, closed after it, as `vouch agent` reports

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	vouchv1 "example.com/app/vouchv1"
)

// agentIdentity is one enrolled agent. Only the worker that owns it in a level touches it.
type agentIdentity struct {
	index    int
	cert     tls.Certificate
	serial   string // lowercase hex without leading zero bytes, as the CA writes serials
	notAfter int64
	enrolled int64
	reports  int64
	last     time.Time // when its last report ended
	conn     *grpc.ClientConn
	ca       vouchv1.CertificateAuthorityClient
}

type reportEnv struct {
	*vouchEnv
	bundleSHA   []byte
	rootSerials []string
	generation  int64
	identities  []*agentIdentity
	paced       int64 // atomic: waits for an identity's interval, this level
	acked       int64 // atomic: reports the CA acknowledged, warm-ups included
	refused     int64 // atomic: reports that failed
}

// report is the identity's next report: the same agent as before, one rotation further.
func (e *reportEnv) report(id *agentIdentity) *vouchv1.AgentReport {
	id.reports++
	return &vouchv1.AgentReport{
		ServingSerial:   id.serial,
		ServingNotAfter: id.notAfter,
		TrustGeneration: e.generation,
		BundleSha256:    e.bundleSHA,
		RootSerials:     e.rootSerials,
		LastRotation:    id.enrolled,
		Rotations:       id.reports,
		AgentVersion:    "vouch-load",
		HostName:        fmt.Sprintf("bench-host-%05d", id.index),
	}
}

// send reports once from id: on its open connection, or on a new one closed afterwards.
func (e *reportEnv) send(ctx context.Context, id *agentIdentity, persistent bool) error {
	var err error
	if persistent {
		if id.conn == nil {
			if id.conn, err = e.dial(&id.cert); err != nil {
				return err
			}
			id.ca = vouchv1.NewCertificateAuthorityClient(id.conn)
		}
		_, err = id.ca.ReportAgent(ctx, e.report(id))
		if status.Code(err) == codes.Unavailable {
			id.conn.Close()
			id.conn = nil
		}
	} else {
		var conn *grpc.ClientConn
		if conn, err = e.dial(&id.cert); err != nil {
			return err
		}
		_, err = vouchv1.NewCertificateAuthorityClient(conn).ReportAgent(ctx, e.report(id))
		conn.Close()
	}
	id.last = time.Now()
	if err != nil {
		atomic.AddInt64(&e.refused, 1)
		return describe(err)
	}
	atomic.AddInt64(&e.acked, 1)
	return nil
}

// reportWorker reports from its share of the active identities in turn.
type reportWorker struct {
	env        *reportEnv
	mine       []*agentIdentity
	next       int
	current    *agentIdentity
	persistent bool
	interval   time.Duration
}

// ready picks the next identity and waits, untimed, until it may report again.
func (w *reportWorker) ready(ctx context.Context) error {
	w.current = w.mine[w.next%len(w.mine)]
	w.next++
	if wait := time.Until(w.current.last.Add(w.interval)); wait > 0 {
		atomic.AddInt64(&w.env.paced, 1)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (w *reportWorker) issue(ctx context.Context) error {
	return w.env.send(ctx, w.current, w.persistent)
}

func (w *reportWorker) close() {}

// setupRow is what enrolling the agents and their first reports took.
type setupRow struct {
	Scenario                      string   `json:"scenario"`
	Agents                        int      `json:"agents"`
	Enrolled                      int      `json:"enrolled"`
	EnrollSeconds                 float64  `json:"enrollSeconds"`
	EnrollServerCPUMicrosPerAgent *float64 `json:"enrollServerCPUMicrosPerAgent,omitempty"`
	Reported                      int      `json:"reported"`
	FirstReportSeconds            float64  `json:"firstReportSeconds"`
	// The first report of each agent, on a new connection: handshake, lineage walk, row insert.
	FirstReportServerCPUMicros *float64 `json:"firstReportServerCPUMicros,omitempty"`
	Failed                     int      `json:"failed"`
	FirstError                 string   `json:"firstError,omitempty"`
}

func (r setupRow) String() string {
	text := fmt.Sprintf("setup: %d agents enrolled in %.1f s, %d first reports in %.1f s, %d failed", r.Enrolled, r.EnrollSeconds,
		r.Reported, r.FirstReportSeconds, r.Failed)
	if r.FirstError != "" {
		text += "; first error: " + r.FirstError
	}
	return text
}

// totalRow closes a vouch-report run: every report acknowledged or failed, warm-ups included.
type totalRow struct {
	Scenario     string `json:"scenario"`
	Agents       int    `json:"agents"`
	Acknowledged int64  `json:"acknowledged"`
	Failed       int64  `json:"failed"`
}

// parallel runs job(i) for i in 0..<n on `workers` goroutines; it returns the failures and the first error.
func parallel(n, workers int, job func(i int) error) (failed int, first string) {
	var mu sync.Mutex
	var group sync.WaitGroup
	next := int64(-1)
	for w := 0; w < workers; w++ {
		group.Add(1)
		go func() {
			defer group.Done()
			for i := int(atomic.AddInt64(&next, 1)); i < n; i = int(atomic.AddInt64(&next, 1)) {
				if err := job(i); err != nil {
					mu.Lock()
					failed++
					if first == "" {
						first = err.Error()
					}
					mu.Unlock()
				}
			}
		}()
	}
	group.Wait()
	return failed, first
}

// serverCPU reads the server's CPU seconds, or -1 without -server-pid.
func serverCPU(o options, tick float64) float64 {
	if o.serverPID <= 0 {
		return -1
	}
	seconds, err := cpuSeconds(o.serverPID, tick)
	if err != nil {
		return -1
	}
	return seconds
}

// microsEach is the CPU between two serverCPU readings per call, in µs; nil when unknown.
func microsEach(before, after float64, calls int) *float64 {
	if before < 0 || after < 0 || calls == 0 {
		return nil
	}
	micros := (after - before) / float64(calls) * 1e6
	return &micros
}

// trustFacts is what an agent holding the CA's current bundle reports of it: the bundle file's
// SHA-256, the roots' serials and the generation (GetTrustBundle).
func (e *reportEnv) trustFacts(ctx context.Context, ca vouchv1.CertificateAuthorityClient) error {
	data, err := os.ReadFile(e.o.bundle)
	if err != nil {
		return err
	}
	digest := sha256.Sum256(data)
	e.bundleSHA = digest[:]
	bundle, err := ca.GetTrustBundle(ctx, &vouchv1.TrustBundleRequest{})
	if err != nil {
		return fmt.Errorf("GetTrustBundle: %v", describe(err))
	}
	e.generation = bundle.Generation
	for _, der := range bundle.Roots {
		root, err := x509.ParseCertificate(der)
		if err != nil {
			return fmt.Errorf("a root of the trust bundle: %v", err)
		}
		e.rootSerials = append(e.rootSerials, fmt.Sprintf("%x", root.SerialNumber.Bytes()))
	}
	return nil
}

// enrollAgents enrolls the identities, each with a key of its own, on -setup-concurrency connections.
func (e *reportEnv) enrollAgents() (failed int, first string) {
	conns := make(chan vouchv1.CertificateAuthorityClient, e.o.setupConcurrency)
	for i := 0; i < e.o.setupConcurrency; i++ {
		conn, err := e.dial(nil)
		if err != nil {
			return e.o.agents, err.Error()
		}
		defer conn.Close()
		conns <- vouchv1.NewCertificateAuthorityClient(conn)
	}
	e.identities = make([]*agentIdentity, e.o.agents)
	return parallel(e.o.agents, e.o.setupConcurrency, func(i int) error {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return err
		}
		csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
		if err != nil {
			return err
		}
		ca := <-conns
		defer func() { conns <- ca }()
		ctx, cancel := context.WithTimeout(context.Background(), e.o.callTimeout)
		defer cancel()
		p := &preparedKey{index: i, key: key, csr: csr}
		response, err := e.enroll(ctx, ca, p)
		if err != nil {
			return err
		}
		leaf, err := x509.ParseCertificate(response.Certificate)
		if err != nil {
			return err
		}
		e.identities[i] = &agentIdentity{index: e.o.serviceOffset*e.o.agentsPerID + i,
			cert:   tls.Certificate{Certificate: append([][]byte{response.Certificate}, response.Chain...), PrivateKey: key},
			serial: fmt.Sprintf("%x", leaf.SerialNumber.Bytes()), notAfter: leaf.NotAfter.Unix(), enrolled: time.Now().Unix()}
		return nil
	})
}

func runReports(o options, out *output) error {
	roots, err := readRoots(o.bundle)
	if err != nil {
		return err
	}
	admin, err := tls.LoadX509KeyPair(o.adminCert, o.adminKey)
	if err != nil {
		return fmt.Errorf("admin credentials: %v", err)
	}
	env := &reportEnv{vouchEnv: &vouchEnv{o: o, roots: roots,
		tokens: &tokenSupply{queue: o.tokens, uses: o.tokenUses, spiffeID: o.spiffeID, perToken: o.agentsPerID, created: o.serviceOffset}}}
	adminConn, err := env.dial(&admin)
	if err != nil {
		return err
	}
	defer adminConn.Close()
	env.tokens.admin = vouchv1.NewAdminClient(adminConn)
	ctx, cancel := context.WithTimeout(context.Background(), o.callTimeout)
	err = env.trustFacts(ctx, vouchv1.NewCertificateAuthorityClient(adminConn))
	cancel()
	if err != nil {
		return err
	}
	tick := clockTick()

	setup := setupRow{Scenario: "vouch-report-setup", Agents: o.agents}
	cpu0, began := serverCPU(o, tick), time.Now()
	failed, first := env.enrollAgents()
	cpu1, enrolled := serverCPU(o, tick), time.Now()
	setup.Enrolled, setup.EnrollSeconds = o.agents-failed, enrolled.Sub(began).Seconds()
	setup.EnrollServerCPUMicrosPerAgent = microsEach(cpu0, cpu1, setup.Enrolled)
	setup.Failed, setup.FirstError = failed, first
	if setup.Enrolled < o.agents {
		out.emit(setup, setup.String())
		return fmt.Errorf("%d of %d enrollments failed: %s", failed, o.agents, first)
	}
	// First reports, each on a new connection closed after it.
	failed, first = parallel(o.agents, o.setupConcurrency, func(i int) error {
		ctx, cancel := context.WithTimeout(context.Background(), o.callTimeout)
		defer cancel()
		return env.send(ctx, env.identities[i], false)
	})
	cpu2 := serverCPU(o, tick)
	setup.Reported, setup.FirstReportSeconds = o.agents-failed, time.Since(enrolled).Seconds()
	setup.FirstReportServerCPUMicros = microsEach(cpu1, cpu2, setup.Reported)
	setup.Failed += failed
	if setup.FirstError == "" {
		setup.FirstError = first
	}
	if err := out.emit(setup, setup.String()); err != nil {
		return err
	}
	if o.seedOnly {
		return nil
	}

	active := env.identities[:o.activeAgents]
	for _, mode := range o.reportModes {
		scenario := "vouch-report"
		if mode == "new" {
			scenario = "vouch-report-new"
		} else if err := env.openConnections(active); err != nil {
			return err
		}
		lo := o
		lo.scenario = scenario
		l := &load{o: lo, tick: tick}
		l.newWorker = func(id, concurrency int) worker {
			w := &reportWorker{env: env, persistent: mode == "persistent", interval: o.minReportInterval}
			for i := id; i < len(active); i += concurrency {
				w.mine = append(w.mine, active[i])
			}
			// Longest silent first: a level does not start with the identities the last one just used.
			sort.SliceStable(w.mine, func(a, b int) bool { return w.mine[a].last.Before(w.mine[b].last) })
			return w
		}
		l.finish = func(r *row) {
			paced := atomic.SwapInt64(&env.paced, 0)
			r.Paced, r.Identities = &paced, len(active)
		}
		if !o.json {
			fmt.Println(header)
		}
		for _, level := range o.levels {
			if level > len(active) {
				return fmt.Errorf("%s at concurrency %d: only %d active identities", scenario, level, len(active))
			}
			atomic.StoreInt64(&env.paced, 0)
			r, err := l.runLevel(level)
			if err != nil {
				return fmt.Errorf("%s at concurrency %d: %v", scenario, level, err)
			}
			if err := out.emit(r, r.String()); err != nil {
				return err
			}
		}
		env.closeConnections(active)
	}
	total := totalRow{Scenario: "vouch-report-total", Agents: o.agents, Acknowledged: atomic.LoadInt64(&env.acked),
		Failed: atomic.LoadInt64(&env.refused)}
	return out.emit(total, fmt.Sprintf("reports acknowledged %d (first reports included), failed %d", total.Acknowledged, total.Failed))
}

// openConnections gives each identity its own connection, opened with one report (untimed), so the
// persistent levels measure reports alone. They stay open only for those levels: idle connections
// the server holds are not what agents, which report on a new connection each time, leave it.
func (e *reportEnv) openConnections(ids []*agentIdentity) error {
	failed, first := parallel(len(ids), e.o.setupConcurrency, func(i int) error {
		ctx, cancel := context.WithTimeout(context.Background(), e.o.callTimeout)
		defer cancel()
		return e.send(ctx, ids[i], true)
	})
	if failed > 0 {
		return fmt.Errorf("opening a connection per identity: %d failed: %s", failed, first)
	}
	return nil
}

func (e *reportEnv) closeConnections(ids []*agentIdentity) {
	for _, id := range ids {
		if id.conn != nil {
			id.conn.Close()
			id.conn = nil
		}
	}
}
