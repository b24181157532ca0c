package servicegraphconnector

import (
	"context"
	"testing"
	"time"

	"go.opentelemetry.io/collector/component/componenttest"
	"go.opentelemetry.io/collector/confmap"
	"go.opentelemetry.io/collector/connector/connectortest"
	"go.opentelemetry.io/collector/consumer/consumertest"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

var (
	traceID  = pcommon.TraceID([16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16})
	clientID = pcommon.SpanID([8]byte{1, 1, 1, 1, 1, 1, 1, 1})
	serverID = pcommon.SpanID([8]byte{2, 2, 2, 2, 2, 2, 2, 2})
	dbID     = pcommon.SpanID([8]byte{3, 3, 3, 3, 3, 3, 3, 3})
)

func addSpan(td ptrace.Traces, service string, kind ptrace.SpanKind, id, parent pcommon.SpanID, d time.Duration, failed bool, attrs map[string]any) {
	rs := td.ResourceSpans().AppendEmpty()
	rs.Resource().Attributes().PutStr("service.name", service)
	rs.Resource().Attributes().PutStr("deployment.environment.name", "test")
	s := rs.ScopeSpans().AppendEmpty().Spans().AppendEmpty()
	s.SetTraceID(traceID)
	s.SetSpanID(id)
	s.SetParentSpanID(parent)
	s.SetKind(kind)
	start := time.Unix(1_700_000_000, 0)
	s.SetStartTimestamp(pcommon.NewTimestampFromTime(start))
	s.SetEndTimestamp(pcommon.NewTimestampFromTime(start.Add(d)))
	if failed {
		s.Status().SetCode(ptrace.StatusCodeError)
	}
	_ = s.Attributes().FromRaw(attrs)
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
	both := &Config{LatencyHistogramBuckets: []time.Duration{time.Second}, ExponentialHistogramMaxSize: 10}
	if both.Validate() == nil {
		t.Fatal("buckets + exponential accepted")
	}
}

func TestEdgesBecomeMetrics(t *testing.T) {
	zero := time.Duration(0)
	cfg := createDefaultConfig().(*Config)
	cfg.MetricsFlushInterval = &zero // flush on every batch
	cfg.Dimensions = []string{"deployment.environment.name"}
	cfg.DatabaseNameAttributes = []string{"db.name", "db.namespace"}
	sink := new(consumertest.MetricsSink)
	f := NewFactory()
	if f.Type().String() != "servicegraph" {
		t.Fatalf("type %q", f.Type())
	}
	conn, err := f.CreateTracesToMetrics(context.Background(), connectortest.NewNopSettings(f.Type()), cfg, sink)
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.Start(context.Background(), componenttest.NewNopHost()); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Shutdown(context.Background()) }()

	td := ptrace.NewTraces()
	// server span arrives first, then the client span: order must not matter.
	addSpan(td, "provider-proxy", ptrace.SpanKindServer, serverID, clientID, 80*time.Millisecond, true, nil)
	addSpan(td, "ws-gateway", ptrace.SpanKindClient, clientID, pcommon.NewSpanIDEmpty(), 100*time.Millisecond, false, nil)
	addSpan(td, "storage-adapter", ptrace.SpanKindClient, dbID, serverID, 3*time.Millisecond, false, map[string]any{"db.namespace": "exai"})
	if err := conn.ConsumeTraces(context.Background(), td); err != nil {
		t.Fatal(err)
	}
	all := sink.AllMetrics()
	if len(all) == 0 {
		t.Fatal("no metrics flushed")
	}
	md := all[len(all)-1]

	total, ok := metricByName(md, "traces_service_graph_request_total")
	if !ok || total.Sum().DataPoints().Len() != 2 {
		t.Fatalf("request_total missing or wrong: %v", ok)
	}
	seen := map[string]pcommon.Map{}
	for i := 0; i < total.Sum().DataPoints().Len(); i++ {
		dp := total.Sum().DataPoints().At(i)
		c, _ := dp.Attributes().Get("client")
		s, _ := dp.Attributes().Get("server")
		seen[c.Str()+"->"+s.Str()] = dp.Attributes()
		if dp.IntValue() != 1 {
			t.Fatalf("count %d", dp.IntValue())
		}
	}
	http, ok := seen["ws-gateway->provider-proxy"]
	if !ok {
		t.Fatalf("missing http edge: %v", seen)
	}
	if v, _ := http.Get("failed"); !v.Bool() {
		t.Fatal("edge should be failed")
	}
	if v, _ := http.Get("client_deployment.environment.name"); v.Str() != "test" {
		t.Fatal("client dimension missing")
	}
	db, ok := seen["storage-adapter->exai"]
	if !ok {
		t.Fatalf("missing db edge: %v", seen)
	}
	if v, _ := db.Get("connection_type"); v.Str() != "database" {
		t.Fatalf("connection_type %q", v.Str())
	}

	failed, ok := metricByName(md, "traces_service_graph_request_failed_total")
	if !ok || failed.Sum().DataPoints().Len() != 1 {
		t.Fatal("failed_total wrong")
	}
	for _, name := range []string{"traces_service_graph_request_server", "traces_service_graph_request_client"} {
		h, ok := metricByName(md, name)
		if !ok || h.Unit() != "s" || h.Histogram().DataPoints().Len() != 2 {
			t.Fatalf("%s wrong", name)
		}
	}
	h, _ := metricByName(md, "traces_service_graph_request_server")
	for i := 0; i < h.Histogram().DataPoints().Len(); i++ {
		dp := h.Histogram().DataPoints().At(i)
		if s, _ := dp.Attributes().Get("server"); s.Str() == "provider-proxy" && (dp.Sum() < 0.079 || dp.Sum() > 0.081) {
			t.Fatalf("server latency %v", dp.Sum())
		}
	}
}

func TestUnpairedEdgeExpiresAndMaxItems(t *testing.T) {
	var completed, expired int
	s := newStore(time.Second, 1, func(*edge) { completed++ }, func(*edge) { expired++ })
	now := time.Unix(100, 0)
	s.now = func() time.Time { return now }
	k1 := edgeKey{traceID, clientID}
	if isNew, err := s.upsertEdge(k1, func(e *edge) { e.clientService = "a" }); !isNew || err != nil {
		t.Fatal(isNew, err)
	}
	if _, err := s.upsertEdge(edgeKey{traceID, serverID}, func(e *edge) { e.clientService = "b" }); err != errTooManyItems {
		t.Fatalf("want errTooManyItems, got %v", err)
	}
	s.expire()
	if expired != 0 || s.len() != 1 {
		t.Fatal("expired too early")
	}
	now = now.Add(2 * time.Second)
	s.expire()
	if expired != 1 || s.len() != 0 || completed != 0 {
		t.Fatalf("expired=%d len=%d completed=%d", expired, s.len(), completed)
	}
}

func TestExponentialHistogram(t *testing.T) {
	zero := time.Duration(0)
	cfg := createDefaultConfig().(*Config)
	cfg.MetricsFlushInterval = &zero
	cfg.ExponentialHistogramMaxSize = 160
	sink := new(consumertest.MetricsSink)
	f := NewFactory()
	conn, err := f.CreateTracesToMetrics(context.Background(), connectortest.NewNopSettings(f.Type()), cfg, sink)
	if err != nil {
		t.Fatal(err)
	}
	td := ptrace.NewTraces()
	addSpan(td, "b", ptrace.SpanKindServer, serverID, clientID, 10*time.Millisecond, false, nil)
	addSpan(td, "a", ptrace.SpanKindClient, clientID, pcommon.NewSpanIDEmpty(), 12*time.Millisecond, false, nil)
	if err := conn.ConsumeTraces(context.Background(), td); err != nil {
		t.Fatal(err)
	}
	md := sink.AllMetrics()[0]
	h, ok := metricByName(md, "traces_service_graph_request_client")
	if !ok || h.Type() != pmetric.MetricTypeExponentialHistogram || h.ExponentialHistogram().DataPoints().At(0).Count() != 1 {
		t.Fatal("exponential histogram wrong")
	}
}
