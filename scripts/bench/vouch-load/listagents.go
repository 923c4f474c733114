package main

// vouch-list-agents: what listing the fleet costs, as `vouch fleet list` and the dashboard list it:
// Admin.ListAgents with -page-size (1000, the most the CA gives) from the first page to the last, on
// one admin connection opened before the clock. One untimed listing first (caches, connection), then
// -repeat timed ones; the server's CPU over all of them, per listing.

import (
	"context"
	"crypto/tls"
	"fmt"
	"sort"
	"time"

	"google.golang.org/protobuf/proto"

	vouchv1 "example.com/app/vouchv1"
)

type listRow struct {
	Scenario          string   `json:"scenario"`
	Agents            int      `json:"agents"`
	WithProblems      int      `json:"withProblems"`
	Pages             int      `json:"pages"`
	PageSize          int      `json:"pageSize"`
	Repeats           int      `json:"repeats"`
	ListingMsMedian   float64  `json:"listingMsMedian"`
	ListingMsMin      float64  `json:"listingMsMin"`
	ListingMsMax      float64  `json:"listingMsMax"`
	FirstPageMsMedian float64  `json:"firstPageMsMedian"`
	LastPageMsMedian  float64  `json:"lastPageMsMedian"`
	ServerCPUMs       *float64 `json:"serverCPUMsPerListing,omitempty"`
	ResponseBytes     int      `json:"responseBytesPerListing"`
}

func (r listRow) String() string {
	cpu := "-"
	if r.ServerCPUMs != nil {
		cpu = fmt.Sprintf("%.0f ms", *r.ServerCPUMs)
	}
	return fmt.Sprintf("ListAgents: %d agents (%d with problems) in %d pages of %d: median %.0f ms (min %.0f, max %.0f) per listing,"+
		" first page %.0f ms, last page %.0f ms, server CPU %s per listing, %d bytes", r.Agents, r.WithProblems, r.Pages, r.PageSize,
		r.ListingMsMedian, r.ListingMsMin, r.ListingMsMax, r.FirstPageMsMedian, r.LastPageMsMedian, cpu, r.ResponseBytes)
}

type listing struct {
	agents, withProblems, bytes int
	pages                       []time.Duration
}

func listAll(admin vouchv1.AdminClient, o options) (listing, error) {
	var result listing
	request := &vouchv1.ListAgentsRequest{PageSize: int32(o.pageSize)}
	for {
		ctx, cancel := context.WithTimeout(context.Background(), o.callTimeout)
		began := time.Now()
		page, err := admin.ListAgents(ctx, request)
		result.pages = append(result.pages, time.Since(began))
		cancel()
		if err != nil {
			return result, fmt.Errorf("ListAgents page %d: %v", len(result.pages), describe(err))
		}
		result.agents += len(page.Agents)
		result.bytes += proto.Size(page)
		for _, agent := range page.Agents {
			if len(agent.Problems) > 0 {
				result.withProblems++
			}
		}
		if page.NextPageToken == "" {
			return result, nil
		}
		request.PageToken = page.NextPageToken
	}
}

func median(values []float64) float64 {
	sorted := append([]float64(nil), values...)
	sort.Float64s(sorted)
	return sorted[len(sorted)/2]
}

func runListAgents(o options, out *output) error {
	roots, err := readRoots(o.bundle)
	if err != nil {
		return err
	}
	admin, err := tls.LoadX509KeyPair(o.adminCert, o.adminKey)
	if err != nil {
		return fmt.Errorf("admin credentials: %v", err)
	}
	env := &vouchEnv{o: o, roots: roots}
	conn, err := env.dial(&admin)
	if err != nil {
		return err
	}
	defer conn.Close()
	client := vouchv1.NewAdminClient(conn)
	if _, err := listAll(client, o); err != nil {
		return err
	}
	tick := clockTick()
	var totals, firsts, lasts []float64
	var last listing
	before := serverCPU(o, tick)
	for i := 0; i < o.repeat; i++ {
		began := time.Now()
		if last, err = listAll(client, o); err != nil {
			return err
		}
		totals = append(totals, float64(time.Since(began))/1e6)
		firsts = append(firsts, float64(last.pages[0])/1e6)
		lasts = append(lasts, float64(last.pages[len(last.pages)-1])/1e6)
	}
	after := serverCPU(o, tick)
	sorted := append([]float64(nil), totals...)
	sort.Float64s(sorted)
	r := listRow{Scenario: "vouch-list-agents", Agents: last.agents, WithProblems: last.withProblems, Pages: len(last.pages),
		PageSize: o.pageSize, Repeats: o.repeat, ListingMsMedian: median(totals), ListingMsMin: sorted[0],
		ListingMsMax: sorted[len(sorted)-1], FirstPageMsMedian: median(firsts), LastPageMsMedian: median(lasts),
		ResponseBytes: last.bytes}
	if micros := microsEach(before, after, o.repeat); micros != nil {
		ms := *micros / 1000
		r.ServerCPUMs = &ms
	}
	return out.emit(r, r.String())
}
