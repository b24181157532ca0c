package servicegraphconnector

// Each test pins one behaviour of the upstream connector (contrib v0.161.0) that the
// compose stack runs, so both stacks turn the same spans into the same series.

import (
	"context"
	"fmt"
	"math"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/connector/connectortest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/featuregate"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

var (
	traceID = pcommon.TraceID([16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16})
	noSpan  = pcommon.NewSpanIDEmpty()
)

func sid(n byte) pcommon.SpanID { return pcommon.SpanID([8]byte{n, n, n, n, n, n, n, n}) }

// span is one span of a test trace; service "" with noService leaves service.name out.
type span struct {
	service   string
	noService bool
	resource  map[string]any
	kind      ptrace.SpanKind
	id        pcommon.SpanID
	parent    pcommon.SpanID
	dur       time.Duration
	failed    bool
	attrs     map[string]any
}

func traces(spans ...span) ptrace.Traces {
	td := ptrace.NewTraces()
	start := time.Unix(1_700_000_000, 0)
	for _, sp := range spans {
		rs := td.ResourceSpans().AppendEmpty()
		if !sp.noService {
			rs.Resource().Attributes().PutStr("service.name", sp.service)
		}
		for k, v := range sp.resource {
			_ = rs.Resource().Attributes().PutEmpty(k).FromRaw(v)
		}
		s := rs.ScopeSpans().AppendEmpty().Spans().AppendEmpty()
		s.SetTraceID(traceID)
		s.SetSpanID(sp.id)
		s.SetParentSpanID(sp.parent)
		s.SetKind(sp.kind)
		s.SetStartTimestamp(pcommon.NewTimestampFromTime(start))
		s.SetEndTimestamp(pcommon.NewTimestampFromTime(start.Add(sp.dur)))
		if sp.failed {
			s.Status().SetCode(ptrace.StatusCodeError)
		}
		_ = s.Attributes().FromRaw(sp.attrs)
	}
	return td
}

// harness drives a connector with a fake clock: spans in, expiry on demand, metrics out.
type harness struct {
	t     *testing.T
	c     *serviceGraphConnector
	clock time.Time
}

func newHarness(t *testing.T, mutate func(*Config)) *harness {
	t.Helper()
	cfg := createDefaultConfig().(*Config)
	cfg.Store.TTL = 10 * time.Second
	if mutate != nil {
		mutate(cfg)
	}
	c, err := newConnector(componenttest.NewNopTelemetrySettings(), cfg, consumertest.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, c: c, clock: time.Unix(1_800_000_000, 0)}
	c.now = func() time.Time { return h.clock }
	c.store.now = c.now
	return h
}

func (h *harness) consume(spans ...span) {
	h.t.Helper()
	if err := h.c.ConsumeTraces(context.Background(), traces(spans...)); err != nil {
		h.t.Fatal(err)
	}
}

// expireAll moves the clock past every TTL and runs the store's expiry.
func (h *harness) expireAll() {
	h.clock = h.clock.Add(h.c.cfg.Store.TTL + time.Nanosecond)
	h.c.store.expire()
}

// labels renders a data point's attributes as "k=v" sorted, joined by ",".
func labels(m pcommon.Map) string {
	var parts []string
	m.Range(func(k string, v pcommon.Value) bool {
		parts = append(parts, k+"="+v.AsString())
		return true
	})
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

func metricByName(md pmetric.Metrics, name string) (pmetric.Metric, bool) {
	rms := md.ResourceMetrics()
	for i := 0; i < rms.Len(); i++ {
		sms := rms.At(i).ScopeMetrics()
		for j := 0; j < sms.Len(); j++ {
			ms := sms.At(j).Metrics()
			for k := 0; k < ms.Len(); k++ {
				if ms.At(k).Name() == name {
					return ms.At(k), true
				}
			}
		}
	}
	return pmetric.Metric{}, false
}

// counter returns label set -> value of a sum metric (empty when the metric is absent).
func counter(md pmetric.Metrics, name string) map[string]int64 {
	out := map[string]int64{}
	m, ok := metricByName(md, name)
	if !ok {
		return out
	}
	for i := 0; i < m.Sum().DataPoints().Len(); i++ {
		dp := m.Sum().DataPoints().At(i)
		out[labels(dp.Attributes())] = dp.IntValue()
	}
	return out
}

const (
	gw      = "ws-gateway"
	proxy   = "provider-proxy"
	storage = "storage-adapter"
	sim     = "llm-simulator"
)

func TestSpansBecomeTheUpstreamSeries(t *testing.T) {
	client, server, client2, server2 := sid(1), sid(2), sid(3), sid(4)
	for _, tc := range []struct {
		name   string
		cfg    func(*Config)
		spans  []span
		total  map[string]int64
		failed map[string]int64
	}{{
		name: "client and server span pair into one edge, whichever arrives first",
		spans: []span{
			{service: proxy, kind: ptrace.SpanKindServer, id: server, parent: client},
			{service: gw, kind: ptrace.SpanKindClient, id: client},
		},
		total: map[string]int64{"client=ws-gateway,connection_type=,failed=false,server=provider-proxy": 1},
	}, {
		name: "an error on either side fails the edge",
		spans: []span{
			{service: gw, kind: ptrace.SpanKindClient, id: client},
			{service: proxy, kind: ptrace.SpanKindServer, id: server, parent: client, failed: true},
			{service: gw, kind: ptrace.SpanKindClient, id: client2, failed: true},
			{service: proxy, kind: ptrace.SpanKindServer, id: server2, parent: client2},
		},
		total:  map[string]int64{"client=ws-gateway,connection_type=,failed=true,server=provider-proxy": 2},
		failed: map[string]int64{"client=ws-gateway,connection_type=,failed=true,server=provider-proxy": 2},
	}, {
		name: "producer and consumer spans make a messaging edge",
		spans: []span{
			{service: "a", kind: ptrace.SpanKindProducer, id: client},
			{service: "b", kind: ptrace.SpanKindConsumer, id: server, parent: client},
		},
		total: map[string]int64{"client=a,connection_type=messaging_system,failed=false,server=b": 1},
	}, {
		name: "a client span with a database name is a complete database edge",
		cfg:  func(c *Config) { c.DatabaseNameAttributes = []string{"db.namespace", "db.name"} },
		spans: []span{
			// Key order decides, not map order: db.namespace wins over db.name.
			{service: storage, kind: ptrace.SpanKindClient, id: client, attrs: map[string]any{"db.name": "old", "db.namespace": "exai", "db.system.name": "postgresql"}},
			// The resource is searched too (before the span, for each key).
			{service: storage, kind: ptrace.SpanKindClient, id: client2, resource: map[string]any{"db.namespace": "fromresource"}, attrs: map[string]any{"db.name": "x"}},
		},
		total: map[string]int64{
			"client=storage-adapter,connection_type=database,failed=false,server=exai":         1,
			"client=storage-adapter,connection_type=database,failed=false,server=fromresource": 1,
		},
	}, {
		name: "database_name_attributes defaults to db.name only",
		spans: []span{
			{service: storage, kind: ptrace.SpanKindClient, id: client, attrs: map[string]any{"db.name": "exai"}},
			// Not a database edge by default: it waits, expires, and (no default peer
			// attribute on it) goes to the virtual node "unknown".
			{service: storage, kind: ptrace.SpanKindClient, id: client2, attrs: map[string]any{"db.namespace": "exai"}},
		},
		total: map[string]int64{
			"client=storage-adapter,connection_type=database,failed=false,server=exai":        1,
			"client=storage-adapter,connection_type=virtual_node,failed=false,server=unknown": 1,
		},
	}, {
		name: "an unpaired client span names its server from the first configured peer attribute",
		cfg: func(c *Config) {
			c.VirtualNodePeerAttributes = []string{"peer.service", "db.system.name", "db.system", "server.address"}
		},
		spans: []span{
			// Redis has no server span; db.system.name comes before server.address.
			{service: storage, kind: ptrace.SpanKindClient, id: client, attrs: map[string]any{"db.system.name": "redis", "server.address": "127.0.0.1"}},
			{service: proxy, kind: ptrace.SpanKindClient, id: client2, failed: true, attrs: map[string]any{"server.address": "api.moonshot.cn", "http.request.method": "POST"}},
			{service: proxy, kind: ptrace.SpanKindClient, id: sid(5)},
		},
		total: map[string]int64{
			"client=storage-adapter,connection_type=virtual_node,failed=false,server=redis":         1,
			"client=provider-proxy,connection_type=virtual_node,failed=true,server=api.moonshot.cn": 1,
			"client=provider-proxy,connection_type=virtual_node,failed=false,server=unknown":        1,
		},
		failed: map[string]int64{"client=provider-proxy,connection_type=virtual_node,failed=true,server=api.moonshot.cn": 1},
	}, {
		name: "the default peer attributes are peer.service, db.name, db.system",
		spans: []span{
			{service: storage, kind: ptrace.SpanKindClient, id: client, attrs: map[string]any{"db.system": "redis", "peer.service": "cache"}},
			{service: storage, kind: ptrace.SpanKindClient, id: client2, attrs: map[string]any{"server.address": "127.0.0.1"}},
		},
		total: map[string]int64{
			"client=storage-adapter,connection_type=virtual_node,failed=false,server=cache":   1,
			"client=storage-adapter,connection_type=virtual_node,failed=false,server=unknown": 1,
		},
	}, {
		name: "peer attributes come from the span, not the resource",
		cfg:  func(c *Config) { c.VirtualNodePeerAttributes = []string{"peer.service"} },
		spans: []span{
			{service: proxy, kind: ptrace.SpanKindClient, id: client, resource: map[string]any{"peer.service": "nope"}},
		},
		total: map[string]int64{"client=provider-proxy,connection_type=virtual_node,failed=false,server=unknown": 1},
	}, {
		name: "an unpaired root server span gets the client user",
		spans: []span{
			{service: gw, kind: ptrace.SpanKindServer, id: server, parent: noSpan},
		},
		total: map[string]int64{"client=user,connection_type=virtual_node,failed=false,server=ws-gateway": 1},
	}, {
		name: "an unpaired server span with a parent is dropped",
		spans: []span{
			{service: proxy, kind: ptrace.SpanKindServer, id: server, parent: client},
		},
	}, {
		name: "an empty virtual_node_peer_attributes turns virtual nodes off",
		cfg:  func(c *Config) { c.VirtualNodePeerAttributes = []string{} },
		spans: []span{
			{service: gw, kind: ptrace.SpanKindServer, id: server, parent: noSpan},
			{service: proxy, kind: ptrace.SpanKindClient, id: client, attrs: map[string]any{"peer.service": "x"}},
		},
	}, {
		name: "internal spans are not edges",
		spans: []span{
			{service: gw, kind: ptrace.SpanKindInternal, id: client},
			{service: gw, kind: ptrace.SpanKindUnspecified, id: client2},
		},
	}, {
		name: "dimensions are prefixed client_/server_, resource before span",
		cfg:  func(c *Config) { c.Dimensions = []string{"deployment.environment.name", "gen_ai.provider.name"} },
		spans: []span{
			{service: gw, kind: ptrace.SpanKindClient, id: client, resource: map[string]any{"deployment.environment.name": "e2e"}, attrs: map[string]any{"deployment.environment.name": "ignored"}},
			{service: proxy, kind: ptrace.SpanKindServer, id: server, parent: client, attrs: map[string]any{"gen_ai.provider.name": "kimi", "http.route": "/v1/chat/completions"}},
		},
		total: map[string]int64{
			"client=ws-gateway,client_deployment.environment.name=e2e,connection_type=,failed=false,server=provider-proxy,server_gen_ai.provider.name=kimi": 1,
		},
	}, {
		name: "non-string dimension values are rendered as strings",
		cfg:  func(c *Config) { c.Dimensions = []string{"http.response.status_code"} },
		spans: []span{
			{service: gw, kind: ptrace.SpanKindClient, id: client, attrs: map[string]any{"http.response.status_code": 200}},
			{service: proxy, kind: ptrace.SpanKindServer, id: server, parent: client},
		},
		total: map[string]int64{"client=ws-gateway,client_http.response.status_code=200,connection_type=,failed=false,server=provider-proxy": 1},
	}, {
		name: "virtual_node_extra_label marks which side is virtual",
		cfg:  func(c *Config) { c.VirtualNodeExtraLabel = true },
		spans: []span{
			{service: gw, kind: ptrace.SpanKindServer, id: server, parent: noSpan},
			{service: gw, kind: ptrace.SpanKindClient, id: client, attrs: map[string]any{"peer.service": "search"}},
			{service: gw, kind: ptrace.SpanKindClient, id: client2},
			{service: proxy, kind: ptrace.SpanKindServer, id: server2, parent: client2},
		},
		total: map[string]int64{
			"client=user,connection_type=virtual_node,failed=false,server=ws-gateway,virtual_node=client":   1,
			"client=ws-gateway,connection_type=virtual_node,failed=false,server=search,virtual_node=server": 1,
			"client=ws-gateway,connection_type=,failed=false,server=provider-proxy,virtual_node=":           1,
		},
	}, {
		name: "a resource without service.name is skipped; an empty one never completes",
		spans: []span{
			{noService: true, kind: ptrace.SpanKindClient, id: client},
			{service: proxy, kind: ptrace.SpanKindServer, id: server, parent: client},
			{service: "", kind: ptrace.SpanKindClient, id: client2},
			{service: proxy, kind: ptrace.SpanKindServer, id: server2, parent: client2},
		},
	}, {
		// Why otel-collector.yaml feeds the connector through filter/servicegraph-genai:
		// the proxy's logical GenAI `chat` CLIENT span has no server span of its own, so
		// it becomes a second, virtual edge next to the per-attempt HTTP span's edge.
		name: "a GenAI chat client span over an HTTP client span counts the call twice",
		cfg: func(c *Config) {
			c.VirtualNodePeerAttributes = []string{"peer.service", "db.system.name", "db.system", "server.address"}
		},
		spans: []span{
			{service: proxy, kind: ptrace.SpanKindClient, id: client, attrs: map[string]any{"gen_ai.operation.name": "chat", "gen_ai.provider.name": "kimi", "server.address": "127.0.0.1"}},
			{service: proxy, kind: ptrace.SpanKindInternal, id: sid(6), parent: client},
			{service: proxy, kind: ptrace.SpanKindClient, id: client2, parent: sid(6), attrs: map[string]any{"http.request.method": "POST", "server.address": "127.0.0.1"}},
			{service: sim, kind: ptrace.SpanKindServer, id: server2, parent: client2},
		},
		total: map[string]int64{
			"client=provider-proxy,connection_type=,failed=false,server=llm-simulator":         1,
			"client=provider-proxy,connection_type=virtual_node,failed=false,server=127.0.0.1": 1,
		},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, tc.cfg)
			h.consume(tc.spans...)
			h.expireAll()
			md := h.c.buildMetrics()
			if tc.total == nil {
				tc.total = map[string]int64{}
			}
			if tc.failed == nil {
				tc.failed = map[string]int64{}
			}
			if got := counter(md, "traces_service_graph_request_total"); !reflect.DeepEqual(got, tc.total) {
				t.Errorf("request_total\n got %v\nwant %v", got, tc.total)
			}
			if got := counter(md, "traces_service_graph_request_failed_total"); !reflect.DeepEqual(got, tc.failed) {
				t.Errorf("request_failed_total\n got %v\nwant %v", got, tc.failed)
			}
			if h.c.store.len() != 0 {
				t.Errorf("%d edges left in the store after expiry", h.c.store.len())
			}
		})
	}
}

func TestLabelTypes(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Dimensions = []string{"http.response.status_code"} })
	h.consume(
		span{service: gw, kind: ptrace.SpanKindClient, id: sid(1), attrs: map[string]any{"http.response.status_code": 500}},
		span{service: proxy, kind: ptrace.SpanKindServer, id: sid(2), parent: sid(1), failed: true},
	)
	m, _ := metricByName(h.c.buildMetrics(), "traces_service_graph_request_total")
	attrs := m.Sum().DataPoints().At(0).Attributes()
	want := map[string]pcommon.ValueType{
		"client": pcommon.ValueTypeStr, "server": pcommon.ValueTypeStr, "connection_type": pcommon.ValueTypeStr,
		"failed": pcommon.ValueTypeBool, "client_http.response.status_code": pcommon.ValueTypeStr,
	}
	got := map[string]pcommon.ValueType{}
	attrs.Range(func(k string, v pcommon.Value) bool { got[k] = v.Type(); return true })
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("attribute types %v, want %v", got, want)
	}
}

func TestLatencyHistograms(t *testing.T) {
	for _, tc := range []struct {
		name    string
		buckets []time.Duration
		bounds  []float64
	}{
		{"default buckets (seconds)", nil, []float64{0.002, 0.004, 0.006, 0.008, 0.01, 0.05, 0.1, 0.2, 0.4, 0.8, 1, 1.4, 2, 5, 10, 15}},
		{"configured buckets in seconds", []time.Duration{5 * time.Millisecond, 100 * time.Millisecond, 2500 * time.Millisecond}, []float64{0.005, 0.1, 2.5}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, func(c *Config) {
				c.LatencyHistogramBuckets = tc.buckets
				c.DatabaseNameAttributes = []string{"db.namespace"}
			})
			h.consume(
				span{service: gw, kind: ptrace.SpanKindClient, id: sid(1), dur: 120 * time.Millisecond},
				span{service: proxy, kind: ptrace.SpanKindServer, id: sid(2), parent: sid(1), dur: 80 * time.Millisecond},
				span{service: storage, kind: ptrace.SpanKindClient, id: sid(3), dur: 3 * time.Millisecond, attrs: map[string]any{"db.namespace": "exai"}},
			)
			md := h.c.buildMetrics()
			want := map[string]map[string]float64{
				// Seen from the server: the server span; a database edge has only its client span.
				"traces_service_graph_request_server": {"ws-gateway>provider-proxy": 0.080, "storage-adapter>exai": 0.003},
				"traces_service_graph_request_client": {"ws-gateway>provider-proxy": 0.120, "storage-adapter>exai": 0.003},
			}
			for name, sums := range want {
				m, ok := metricByName(md, name)
				if !ok || m.Type() != pmetric.MetricTypeHistogram || m.Unit() != "s" {
					t.Fatalf("%s: missing, not an explicit histogram or unit not s", name)
				}
				if m.Histogram().AggregationTemporality() != pmetric.AggregationTemporalityCumulative {
					t.Fatalf("%s: not cumulative", name)
				}
				dps := m.Histogram().DataPoints()
				if dps.Len() != len(sums) {
					t.Fatalf("%s: %d series, want %d", name, dps.Len(), len(sums))
				}
				for i := 0; i < dps.Len(); i++ {
					dp := dps.At(i)
					c, _ := dp.Attributes().Get("client")
					s, _ := dp.Attributes().Get("server")
					wantSum := sums[c.Str()+">"+s.Str()]
					if dp.Count() != 1 || math.Abs(dp.Sum()-wantSum) > 1e-9 {
						t.Errorf("%s %s>%s: count %d sum %v, want 1 and %v", name, c.Str(), s.Str(), dp.Count(), dp.Sum(), wantSum)
					}
					if !reflect.DeepEqual(dp.ExplicitBounds().AsRaw(), tc.bounds) {
						t.Errorf("%s bounds %v, want %v", name, dp.ExplicitBounds().AsRaw(), tc.bounds)
					}
					counts := dp.BucketCounts().AsRaw()
					if len(counts) != len(tc.bounds)+1 {
						t.Fatalf("%s: %d buckets for %d bounds", name, len(counts), len(tc.bounds))
					}
					// The value lands in the first bucket whose upper bound is >= it.
					idx := sort.SearchFloat64s(tc.bounds, wantSum)
					if counts[idx] != 1 {
						t.Errorf("%s: %v not in bucket %d: %v", name, wantSum, idx, counts)
					}
				}
			}
		})
	}
}

func TestAValueOnABucketBoundIsInThatBucket(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.LatencyHistogramBuckets = []time.Duration{time.Second, 2 * time.Second} })
	h.consume(
		span{service: gw, kind: ptrace.SpanKindClient, id: sid(1), dur: time.Second},
		span{service: proxy, kind: ptrace.SpanKindServer, id: sid(2), parent: sid(1), dur: time.Second},
	)
	m, _ := metricByName(h.c.buildMetrics(), "traces_service_graph_request_client")
	if got := m.Histogram().DataPoints().At(0).BucketCounts().AsRaw(); !reflect.DeepEqual(got, []uint64{1, 0, 0}) {
		t.Fatalf("bucket counts %v, want [1 0 0] (le=1 includes 1s)", got)
	}
}

func TestASpanEndingBeforeItStartsWrapsLikeUpstream(t *testing.T) {
	h := newHarness(t, nil)
	h.consume(
		span{service: gw, kind: ptrace.SpanKindClient, id: sid(1), dur: -time.Millisecond},
		span{service: proxy, kind: ptrace.SpanKindServer, id: sid(2), parent: sid(1)},
	)
	m, _ := metricByName(h.c.buildMetrics(), "traces_service_graph_request_client")
	dp := m.Histogram().DataPoints().At(0)
	counts := dp.BucketCounts().AsRaw()
	if counts[len(counts)-1] != 1 || dp.Sum() < 1e9 {
		t.Fatalf("want the +Inf bucket and a huge sum (unsigned difference), got %v sum %v", counts, dp.Sum())
	}
}

func TestExponentialHistograms(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.ExponentialHistogramMaxSize = 160 })
	h.consume(
		span{service: "b", kind: ptrace.SpanKindServer, id: sid(2), parent: sid(1), dur: 10 * time.Millisecond},
		span{service: "a", kind: ptrace.SpanKindClient, id: sid(1), dur: 12 * time.Millisecond},
		span{service: "b", kind: ptrace.SpanKindServer, id: sid(4), parent: sid(3), dur: 30 * time.Millisecond},
		span{service: "a", kind: ptrace.SpanKindClient, id: sid(3), dur: 40 * time.Millisecond},
	)
	md := h.c.buildMetrics()
	for name, want := range map[string][3]float64{
		"traces_service_graph_request_server": {0.010, 0.030, 0.040},
		"traces_service_graph_request_client": {0.012, 0.040, 0.052},
	} {
		m, ok := metricByName(md, name)
		if !ok || m.Type() != pmetric.MetricTypeExponentialHistogram || m.Unit() != "s" {
			t.Fatalf("%s: missing or not an exponential histogram in s", name)
		}
		dp := m.ExponentialHistogram().DataPoints().At(0)
		if dp.Count() != 2 || math.Abs(dp.Min()-want[0]) > 1e-9 || math.Abs(dp.Max()-want[1]) > 1e-9 || math.Abs(dp.Sum()-want[2]) > 1e-9 {
			t.Errorf("%s: count %d min %v max %v sum %v, want 2 %v", name, dp.Count(), dp.Min(), dp.Max(), dp.Sum(), want)
		}
		var inBuckets uint64
		for _, n := range dp.Positive().BucketCounts().AsRaw() {
			inBuckets += n
		}
		if inBuckets != 2 || dp.Timestamp() == 0 || dp.StartTimestamp() == 0 {
			t.Errorf("%s: %d values in buckets, timestamps %v/%v", name, inBuckets, dp.StartTimestamp(), dp.Timestamp())
		}
	}
}

func TestStoreTTLAndMaxItems(t *testing.T) {
	type event struct {
		at       time.Duration // clock offset when expire() runs
		expired  int
		inStore  int
		complete int
	}
	var completed, expired int
	s := newStore(10*time.Second, 2, func(*edge) { completed++ }, func(*edge) { expired++ })
	start := time.Unix(100, 0)
	now := start
	s.now = func() time.Time { return now }

	waiting := func(n byte) func(*edge) { return func(e *edge) { e.clientService = fmt.Sprint("c", n) } }
	if isNew, err := s.upsertEdge(edgeKey{traceID, sid(1)}, waiting(1)); !isNew || err != nil {
		t.Fatal(isNew, err)
	}
	now = start.Add(5 * time.Second)
	if isNew, err := s.upsertEdge(edgeKey{traceID, sid(2)}, waiting(2)); !isNew || err != nil {
		t.Fatal(isNew, err)
	}
	// Full: a third waiting edge is refused ...
	if isNew, err := s.upsertEdge(edgeKey{traceID, sid(3)}, waiting(3)); isNew || err != errTooManyItems {
		t.Fatalf("want errTooManyItems, got %v %v", isNew, err)
	}
	// ... but an edge complete on its first span (a database call) is still recorded,
	if isNew, err := s.upsertEdge(edgeKey{traceID, sid(4)}, func(e *edge) { e.clientService, e.serverService = "a", "db" }); !isNew || err != nil || completed != 1 {
		t.Fatalf("complete edge refused: %v %v completed=%d", isNew, err, completed)
	}
	// ... and so is the other side of a waiting edge (not new; completes and leaves).
	if isNew, err := s.upsertEdge(edgeKey{traceID, sid(2)}, func(e *edge) { e.serverService = "s" }); isNew || err != nil || completed != 2 {
		t.Fatalf("pairing refused: %v %v completed=%d", isNew, err, completed)
	}

	for _, ev := range []event{
		{at: 9 * time.Second, expired: 0, inStore: 1, complete: 2},
		{at: 10 * time.Second, expired: 0, inStore: 1, complete: 2}, // exactly at the TTL: not yet
		{at: 10*time.Second + 1, expired: 1, inStore: 0, complete: 2},
	} {
		now = start.Add(ev.at)
		s.expire()
		if expired != ev.expired || s.len() != ev.inStore || completed != ev.complete {
			t.Fatalf("at +%v: expired=%d len=%d completed=%d, want %+v", ev.at, expired, s.len(), completed, ev)
		}
	}
}

func TestMaxItemsZeroDropsEveryWaitingSpan(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.Store.MaxItems = 0 })
	h.consume(
		span{service: gw, kind: ptrace.SpanKindClient, id: sid(1)},
		span{service: proxy, kind: ptrace.SpanKindServer, id: sid(2), parent: sid(1)},
		span{service: storage, kind: ptrace.SpanKindClient, id: sid(3), attrs: map[string]any{"db.name": "exai"}},
	)
	h.expireAll()
	want := map[string]int64{"client=storage-adapter,connection_type=database,failed=false,server=exai": 1}
	if got := counter(h.c.buildMetrics(), "traces_service_graph_request_total"); !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

func TestEdgesWaitForTheTTLBeforeBecomingVirtual(t *testing.T) {
	h := newHarness(t, nil)
	h.consume(span{service: gw, kind: ptrace.SpanKindServer, id: sid(2), parent: noSpan})
	h.clock = h.clock.Add(h.c.cfg.Store.TTL)
	h.c.store.expire()
	if n := len(counter(h.c.buildMetrics(), "traces_service_graph_request_total")); n != 0 {
		t.Fatalf("virtual edge recorded before its TTL passed")
	}
	h.expireAll()
	if n := len(counter(h.c.buildMetrics(), "traces_service_graph_request_total")); n != 1 {
		t.Fatalf("virtual edge not recorded after its TTL")
	}
}

func TestSeriesAreCumulativeAndStaleOnesDropped(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MetricsTimestampOffset = 30 * time.Second })
	started := h.c.startTime
	for i := byte(0); i < 3; i++ {
		h.consume(
			span{service: gw, kind: ptrace.SpanKindClient, id: sid(10 + i)},
			span{service: proxy, kind: ptrace.SpanKindServer, id: sid(20 + i), parent: sid(10 + i)},
		)
	}
	md := h.c.buildMetrics()
	m, _ := metricByName(md, "traces_service_graph_request_total")
	dp := m.Sum().DataPoints().At(0)
	if dp.IntValue() != 3 || !m.Sum().IsMonotonic() || m.Sum().AggregationTemporality() != pmetric.AggregationTemporalityCumulative {
		t.Fatalf("want a cumulative monotonic 3, got %v", dp.IntValue())
	}
	if !dp.StartTimestamp().AsTime().Equal(started) {
		t.Fatalf("start timestamp %v, want the connector start %v", dp.StartTimestamp().AsTime(), started)
	}
	if want := h.clock.Add(-30 * time.Second); !dp.Timestamp().AsTime().Equal(want) {
		t.Fatalf("timestamp %v, want now - metrics_timestamp_offset = %v", dp.Timestamp().AsTime(), want)
	}
	if rm := md.ResourceMetrics().At(0); rm.Resource().Attributes().Len() != 0 || rm.ScopeMetrics().At(0).Scope().Name() != "traces_service_graph" {
		t.Fatalf("resource/scope differ from upstream")
	}

	h.clock = h.clock.Add(15 * time.Minute)
	h.c.cleanStaleSeries()
	if md.MetricCount() == 0 || h.c.buildMetrics().MetricCount() != 3 {
		t.Fatalf("a series updated exactly 15 minutes ago was dropped")
	}
	h.clock = h.clock.Add(time.Millisecond)
	h.c.cleanStaleSeries()
	if n := h.c.buildMetrics().MetricCount(); n != 0 {
		t.Fatalf("stale series kept: %d metrics", n)
	}
}

func TestMetricsFlushInterval(t *testing.T) {
	d := func(v time.Duration) *time.Duration { return &v }
	for _, tc := range []struct {
		name      string
		interval  *time.Duration
		wantEvery time.Duration
	}{
		{"unset: every 60s", nil, 60 * time.Second},
		{"0: on every batch", d(0), 0},
		{"50ms", d(50 * time.Millisecond), 50 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := createDefaultConfig().(*Config)
			cfg.MetricsFlushInterval = tc.interval
			sink := new(consumertest.MetricsSink)
			f := NewFactory()
			conn, err := f.CreateTracesToMetrics(context.Background(), connectortest.NewNopSettings(f.Type()), cfg, sink)
			if err != nil {
				t.Fatal(err)
			}
			if got := conn.(*serviceGraphConnector).flushInt; got != tc.wantEvery {
				t.Fatalf("flush interval %v, want %v", got, tc.wantEvery)
			}
			if err := conn.Start(context.Background(), componenttest.NewNopHost()); err != nil {
				t.Fatal(err)
			}
			defer func() { _ = conn.Shutdown(context.Background()) }()
			td := traces(
				span{service: gw, kind: ptrace.SpanKindClient, id: sid(1)},
				span{service: proxy, kind: ptrace.SpanKindServer, id: sid(2), parent: sid(1)},
			)
			if err := conn.ConsumeTraces(context.Background(), td); err != nil {
				t.Fatal(err)
			}
			switch {
			case tc.wantEvery == 0:
				if len(sink.AllMetrics()) != 1 {
					t.Fatalf("%d flushes right after one batch, want 1", len(sink.AllMetrics()))
				}
			case tc.wantEvery < time.Second:
				deadline := time.Now().Add(5 * time.Second)
				for len(sink.AllMetrics()) < 2 && time.Now().Before(deadline) {
					time.Sleep(10 * time.Millisecond)
				}
				if len(sink.AllMetrics()) < 2 {
					t.Fatal("no periodic flushes")
				}
			default:
				if len(sink.AllMetrics()) != 0 {
					t.Fatal("flushed on a batch although an interval is set")
				}
			}
		})
	}
}

func TestNothingIsFlushedWithoutEdges(t *testing.T) {
	sink := new(consumertest.MetricsSink)
	zero := time.Duration(0)
	cfg := createDefaultConfig().(*Config)
	cfg.MetricsFlushInterval = &zero
	c, err := newConnector(componenttest.NewNopTelemetrySettings(), cfg, sink)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.ConsumeTraces(context.Background(), traces(span{service: gw, kind: ptrace.SpanKindClient, id: sid(1)})); err != nil {
		t.Fatal(err)
	}
	if len(sink.AllMetrics()) != 0 {
		t.Fatal("an empty batch of metrics was sent")
	}
}

func TestFeatureGatesAtTheirUpstreamStages(t *testing.T) {
	reg := featuregate.GlobalRegistry()
	stages := map[string]bool{}
	reg.VisitAll(func(g *featuregate.Gate) {
		if strings.HasPrefix(g.ID(), "connector.servicegraph.") {
			stages[g.ID()+"="+g.Stage().String()] = g.IsEnabled()
		}
	})
	want := map[string]bool{
		"connector.servicegraph.virtualNode=Stable":                  true,
		"connector.servicegraph.legacyLatencyMetricNames=Deprecated": false,
		"connector.servicegraph.legacyLatencyUnitMs=Deprecated":      false,
	}
	if !reflect.DeepEqual(stages, want) {
		t.Fatalf("gates %v, want %v", stages, want)
	}
	if reg.Set("connector.servicegraph.virtualNode", false) == nil {
		t.Fatal("the stable virtualNode gate could be disabled")
	}
	if reg.Set("connector.servicegraph.legacyLatencyUnitMs", true) == nil {
		t.Fatal("a deprecated legacy gate could be enabled")
	}
}

func TestFactoryAndDefaults(t *testing.T) {
	f := NewFactory()
	if f.Type().String() != "servicegraph" || f.TracesToMetricsStability().String() != "Alpha" {
		t.Fatalf("type %q stability %v", f.Type(), f.TracesToMetricsStability())
	}
	want := &Config{Store: StoreConfig{TTL: 2 * time.Second, MaxItems: 1000}, CacheLoop: time.Minute, StoreExpirationLoop: 2 * time.Second}
	if got := f.CreateDefaultConfig(); !reflect.DeepEqual(got, want) {
		t.Fatalf("defaults %+v, want %+v", got, want)
	}
}

func TestUpstreamConfigKeysAccepted(t *testing.T) {
	cfg := createDefaultConfig().(*Config)
	conf := confmap.NewFromStringMap(map[string]any{
		"latency_histogram_buckets":    []any{"10ms", "100ms", "1s"},
		"dimensions":                   []any{"deployment.environment.name"},
		"store":                        map[string]any{"ttl": "5s", "max_items": 5000},
		"cache_loop":                   "2m",
		"store_expiration_loop":        "1s",
		"virtual_node_peer_attributes": []any{"peer.service", "db.system"},
		"virtual_node_extra_label":     true,
		"metrics_flush_interval":       "15s",
		"metrics_timestamp_offset":     "0s",
		"database_name_attributes":     []any{"db.name", "db.namespace"},
	})
	if err := conf.Unmarshal(cfg); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	if cfg.Store.MaxItems != 5000 || *cfg.MetricsFlushInterval != 15*time.Second || len(cfg.LatencyHistogramBuckets) != 3 {
		t.Fatalf("unexpected config %+v", cfg)
	}
	bad := confmap.NewFromStringMap(map[string]any{"no_such_key": 1})
	if err := bad.Unmarshal(createDefaultConfig()); err == nil {
		t.Fatal("unknown key accepted")
	}
	for name, c := range map[string]*Config{
		"buckets and exponential": {LatencyHistogramBuckets: []time.Duration{time.Second}, ExponentialHistogramMaxSize: 10},
		"negative exponential":    {ExponentialHistogramMaxSize: -1},
		"negative max_items":      {Store: StoreConfig{MaxItems: -1}},
		"negative offset":         {MetricsTimestampOffset: -time.Second},
	} {
		if c.Validate() == nil {
			t.Errorf("%s accepted", name)
		}
	}
}
