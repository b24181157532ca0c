package servicegraphconnector // import "exai.local/otelcol/servicegraphconnector"

import (
	"context"
	"errors"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/lightstep/go-expohisto/structure"
	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/pmetric"
	"go.opentelemetry.io/collector/pdata/ptrace"
	"go.opentelemetry.io/otel/metric"
	"go.uber.org/zap"
)

const (
	keySep          = "\x00"
	clientKind      = "client"
	serverKind      = "server"
	virtualNodeAttr = "virtual_node"
	userNode        = "user"    // the client of a root server span
	unknownNode     = "unknown" // the server of an unpaired client span with no peer attribute
	scopeName       = "traces_service_graph"
	staleSeriesAge  = 15 * time.Minute
	defaultFlushInt = 60 * time.Second // upstream: "1 DPM"
)

var (
	defaultBucketsSeconds = []float64{0.002, 0.004, 0.006, 0.008, 0.01, 0.05, 0.1, 0.2, 0.4, 0.8, 1, 1.4, 2, 5, 10, 15}
	defaultPeerAttributes = []string{"peer.service", "db.name", "db.system"}
	defaultDBNameAttrs    = []string{"db.name"}
)

// latency aggregates one histogram series (explicit or exponential buckets).
type latency struct {
	count  uint64
	sum    float64
	counts []uint64
	expo   *structure.Histogram[float64]
}

type series struct {
	attrs       pcommon.Map
	lastUpdated time.Time
	total       int64
	failed      int64
	client      latency
	server      latency
}

type serviceGraphConnector struct {
	cfg    *Config
	logger *zap.Logger
	next   consumer.Metrics

	bounds   []float64 // nil => exponential histograms
	flushInt time.Duration

	store     *store
	startTime time.Time
	now       func() time.Time

	mu     sync.Mutex
	series map[string]*series

	droppedSpans metric.Int64Counter
	totalEdges   metric.Int64Counter
	expiredEdges metric.Int64Counter

	shutdownOnce sync.Once
	shutdownCh   chan struct{}
	wg           sync.WaitGroup
}

func newConnector(set component.TelemetrySettings, cfg *Config, next consumer.Metrics) (*serviceGraphConnector, error) {
	c := &serviceGraphConnector{
		cfg:        cfg,
		logger:     set.Logger,
		next:       next,
		flushInt:   defaultFlushInt,
		startTime:  time.Now(),
		now:        time.Now,
		series:     map[string]*series{},
		shutdownCh: make(chan struct{}),
	}
	if cfg.ExponentialHistogramMaxSize == 0 {
		c.bounds = defaultBucketsSeconds
		if cfg.LatencyHistogramBuckets != nil {
			c.bounds = make([]float64, len(cfg.LatencyHistogramBuckets))
			for i, d := range cfg.LatencyHistogramBuckets {
				c.bounds[i] = d.Seconds()
			}
		}
	}
	if cfg.CacheLoop <= 0 {
		cfg.CacheLoop = time.Minute
	}
	if cfg.StoreExpirationLoop <= 0 {
		cfg.StoreExpirationLoop = 2 * time.Second
	}
	// nil means "not configured" (the defaults); an explicit [] turns virtual nodes off.
	if cfg.VirtualNodePeerAttributes == nil {
		cfg.VirtualNodePeerAttributes = defaultPeerAttributes
	}
	if len(cfg.DatabaseNameAttributes) == 0 {
		cfg.DatabaseNameAttributes = defaultDBNameAttrs
	}
	if cfg.MetricsFlushInterval != nil {
		c.flushInt = *cfg.MetricsFlushInterval
		if c.flushInt <= 0 {
			c.logger.Warn("MetricsFlushInterval is set to 0, metrics will be flushed on every received batch of traces")
		}
	}

	meter := set.MeterProvider.Meter(upstreamScope)
	var err error
	if c.droppedSpans, err = meter.Int64Counter("otelcol_connector_servicegraph_dropped_spans",
		metric.WithDescription("Number of spans dropped when trying to add edges"), metric.WithUnit("1")); err != nil {
		return nil, err
	}
	if c.totalEdges, err = meter.Int64Counter("otelcol_connector_servicegraph_total_edges",
		metric.WithDescription("Total number of unique edges"), metric.WithUnit("1")); err != nil {
		return nil, err
	}
	if c.expiredEdges, err = meter.Int64Counter("otelcol_connector_servicegraph_expired_edges",
		metric.WithDescription("Number of edges that expired before finding its matching span"), metric.WithUnit("1")); err != nil {
		return nil, err
	}
	c.store = newStore(cfg.Store.TTL, cfg.Store.MaxItems, c.onComplete, c.onExpire)
	return c, nil
}

// spanDuration in seconds. Like upstream, the nanosecond difference is unsigned: a span
// that ends before it starts wraps to a huge value (lands in the +Inf bucket) rather
// than being clamped, so both stacks bucket broken spans the same way.
func spanDuration(s ptrace.Span) float64 {
	return float64(s.EndTimestamp()-s.StartTimestamp()) / float64(time.Second.Nanoseconds())
}

// Start launches the flush, store-expiry and stale-series loops.
func (c *serviceGraphConnector) Start(context.Context, component.Host) error {
	c.every(c.cfg.StoreExpirationLoop, c.store.expire)
	c.every(c.cfg.CacheLoop, c.cleanStaleSeries)
	if c.flushInt > 0 {
		c.every(c.flushInt, func() {
			if err := c.flush(context.Background()); err != nil {
				c.logger.Error("failed to flush metrics", zap.Error(err))
			}
		})
	}
	c.logger.Info("Started servicegraph connector (exai local build)")
	return nil
}

func (c *serviceGraphConnector) every(d time.Duration, fn func()) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				fn()
			case <-c.shutdownCh:
				return
			}
		}
	}()
}

// Shutdown stops the loops.
func (c *serviceGraphConnector) Shutdown(context.Context) error {
	c.shutdownOnce.Do(func() { close(c.shutdownCh) })
	c.wg.Wait()
	return nil
}

// Capabilities: the traces are only read.
func (*serviceGraphConnector) Capabilities() consumer.Capabilities {
	return consumer.Capabilities{MutatesData: false}
}

// ConsumeTraces pairs client/producer spans with server/consumer spans into edges.
func (c *serviceGraphConnector) ConsumeTraces(ctx context.Context, td ptrace.Traces) error {
	rss := td.ResourceSpans()
	for i := 0; i < rss.Len(); i++ {
		rs := rss.At(i)
		resAttrs := rs.Resource().Attributes()
		// As upstream: a resource without service.name is skipped; an empty one is not
		// (its edges just never complete).
		svc, ok := resAttrs.Get("service.name")
		if !ok {
			continue
		}
		serviceName := svc.AsString()
		sss := rs.ScopeSpans()
		for j := 0; j < sss.Len(); j++ {
			spans := sss.At(j).Spans()
			for k := 0; k < spans.Len(); k++ {
				c.consumeSpan(ctx, serviceName, resAttrs, spans.At(k))
			}
		}
	}
	if c.flushInt <= 0 {
		if err := c.flush(ctx); err != nil {
			c.logger.Error("failed to flush metrics", zap.Error(err))
		}
	}
	return nil
}

func (c *serviceGraphConnector) consumeSpan(ctx context.Context, serviceName string, resAttrs pcommon.Map, span ptrace.Span) {
	conn := connUnknown
	failed := span.Status().Code() == ptrace.StatusCodeError
	var (
		isNew bool
		err   error
	)
	switch span.Kind() {
	case ptrace.SpanKindProducer, ptrace.SpanKindClient:
		if span.Kind() == ptrace.SpanKindProducer {
			conn = connMessaging
		}
		isNew, err = c.store.upsertEdge(edgeKey{span.TraceID(), span.SpanID()}, func(e *edge) {
			e.connectionType = conn
			e.clientService = serviceName
			e.clientLatency = spanDuration(span)
			e.failed = e.failed || failed
			c.putDimensions(clientKind, e.dimensions, resAttrs, span.Attributes())
			// The first configured peer attribute the span has (span attributes only).
			if k, v, ok := firstMatch(c.cfg.VirtualNodePeerAttributes, span.Attributes()); ok {
				e.peer[k] = v
			}
			// A database call has no server span: the client span stands for both sides.
			if _, db, ok := firstMatch(c.cfg.DatabaseNameAttributes, resAttrs, span.Attributes()); ok {
				e.connectionType = connDatabase
				e.serverService = db
				e.serverLatency = spanDuration(span)
			}
		})
	case ptrace.SpanKindConsumer, ptrace.SpanKindServer:
		if span.Kind() == ptrace.SpanKindConsumer {
			conn = connMessaging
		}
		isNew, err = c.store.upsertEdge(edgeKey{span.TraceID(), span.ParentSpanID()}, func(e *edge) {
			e.connectionType = conn
			e.serverService = serviceName
			e.serverLatency = spanDuration(span)
			e.failed = e.failed || failed
			c.putDimensions(serverKind, e.dimensions, resAttrs, span.Attributes())
		})
	default:
		return
	}
	if errors.Is(err, errTooManyItems) {
		c.droppedSpans.Add(ctx, 1)
		return
	}
	if isNew {
		c.totalEdges.Add(ctx, 1)
	}
}

// putDimensions: each configured dimension, from the resource first, then the span.
func (c *serviceGraphConnector) putDimensions(kind string, dst map[string]string, resAttrs, spanAttrs pcommon.Map) {
	for _, dim := range c.cfg.Dimensions {
		if _, v, ok := firstMatch([]string{dim}, resAttrs, spanAttrs); ok {
			dst[kind+"_"+dim] = v
		}
	}
}

// firstMatch returns the first of keys (in order) found in any of maps (in order),
// its value as a string.
func firstMatch(keys []string, maps ...pcommon.Map) (string, string, bool) {
	for _, k := range keys {
		for _, m := range maps {
			if v, ok := m.Get(k); ok {
				return k, v.AsString(), true
			}
		}
	}
	return "", "", false
}

// onExpire: an edge whose other side never came. With virtual_node_peer_attributes not
// empty (virtual nodes are always on, as upstream's stable gate), a root server span gets
// the client "user" and a client span gets a server named by its peer attribute.
func (c *serviceGraphConnector) onExpire(e *edge) {
	c.expiredEdges.Add(context.Background(), 1)
	if len(c.cfg.VirtualNodePeerAttributes) == 0 {
		return
	}
	e.connectionType = connVirtualNode
	if e.clientService == "" && e.key.spanID.IsEmpty() {
		e.clientService = userNode
		if c.cfg.VirtualNodeExtraLabel {
			e.virtualNode = clientKind
		}
		c.onComplete(e)
	}
	if e.serverService == "" {
		e.serverService = unknownNode
		for _, k := range c.cfg.VirtualNodePeerAttributes {
			if v, ok := e.peer[k]; ok {
				e.serverService = v
				break
			}
		}
		if c.cfg.VirtualNodeExtraLabel {
			e.virtualNode = serverKind
		}
		c.onComplete(e)
	}
}

// seriesKey identifies a series as upstream does: client, server, connection type,
// failed and the dimensions. virtual_node is NOT part of it, so (as upstream) a series
// takes the virtual_node label of the last edge recorded into it.
func (c *serviceGraphConnector) seriesKey(e *edge) string {
	var key strings.Builder
	key.WriteString(e.clientService + keySep + e.serverService + keySep + string(e.connectionType) + keySep + strconv.FormatBool(e.failed))
	for _, dim := range c.cfg.Dimensions {
		for _, kind := range []string{clientKind, serverKind} {
			if v, ok := e.dimensions[kind+"_"+dim]; ok {
				key.WriteString(keySep + kind + "_" + dim + "_" + v)
			}
		}
	}
	return key.String()
}

func (c *serviceGraphConnector) seriesAttrs(e *edge) pcommon.Map {
	attrs := pcommon.NewMap()
	attrs.PutStr("client", e.clientService)
	attrs.PutStr("server", e.serverService)
	attrs.PutStr("connection_type", string(e.connectionType))
	attrs.PutBool("failed", e.failed)
	for k, v := range e.dimensions {
		attrs.PutStr(k, v)
	}
	if c.cfg.VirtualNodeExtraLabel {
		attrs.PutStr(virtualNodeAttr, e.virtualNode)
	}
	return attrs
}

func (c *serviceGraphConnector) onComplete(e *edge) {
	key := c.seriesKey(e)
	attrs := c.seriesAttrs(e)

	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.series[key]
	if !ok {
		s = &series{}
		c.series[key] = s
	}
	s.attrs = attrs
	s.lastUpdated = c.now()
	s.total++
	if e.failed {
		s.failed++
	}
	c.observe(&s.server, e.serverLatency)
	c.observe(&s.client, e.clientLatency)
}

func (c *serviceGraphConnector) observe(l *latency, v float64) {
	l.count++
	l.sum += v
	if c.bounds == nil {
		if l.expo == nil {
			l.expo = new(structure.Histogram[float64])
			l.expo.Init(structure.NewConfig(structure.WithMaxSize(c.cfg.ExponentialHistogramMaxSize)))
		}
		l.expo.Update(v)
		return
	}
	if l.counts == nil {
		l.counts = make([]uint64, len(c.bounds)+1)
	}
	l.counts[sort.SearchFloat64s(c.bounds, v)]++
}

// cleanStaleSeries drops the series no edge has updated for 15 minutes.
func (c *serviceGraphConnector) cleanStaleSeries() {
	c.mu.Lock()
	defer c.mu.Unlock()
	cutoff := c.now().Add(-staleSeriesAge)
	for k, s := range c.series {
		if s.lastUpdated.Before(cutoff) {
			delete(c.series, k)
		}
	}
}

func (c *serviceGraphConnector) flush(ctx context.Context) error {
	md := c.buildMetrics()
	if md.MetricCount() == 0 {
		return nil
	}
	return c.next.ConsumeMetrics(ctx, md)
}

func (c *serviceGraphConnector) buildMetrics() pmetric.Metrics {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.series) == 0 {
		return pmetric.NewMetrics()
	}
	md := pmetric.NewMetrics()
	sm := md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty()
	sm.Scope().SetName(scopeName)

	start := pcommon.NewTimestampFromTime(c.startTime)
	now := pcommon.NewTimestampFromTime(c.now().Add(-c.cfg.MetricsTimestampOffset))

	keys := make([]string, 0, len(c.series))
	for k := range c.series {
		keys = append(keys, k)
	}
	sort.Strings(keys)

	// Counters: only series with a non-zero value (failed_total has only failed edges).
	sum := func(name string, value func(*series) int64) {
		m := pmetric.NewMetric()
		m.SetName(name)
		s := m.SetEmptySum()
		s.SetIsMonotonic(true)
		s.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
		for _, k := range keys {
			ser := c.series[k]
			v := value(ser)
			if v == 0 {
				continue
			}
			dp := s.DataPoints().AppendEmpty()
			dp.SetStartTimestamp(start)
			dp.SetTimestamp(now)
			dp.SetIntValue(v)
			ser.attrs.CopyTo(dp.Attributes())
		}
		if s.DataPoints().Len() > 0 {
			m.MoveTo(sm.Metrics().AppendEmpty())
		}
	}
	sum("traces_service_graph_request_total", func(s *series) int64 { return s.total })
	sum("traces_service_graph_request_failed_total", func(s *series) int64 { return s.failed })

	hist := func(name string, pick func(*series) *latency) {
		m := pmetric.NewMetric()
		m.SetName(name)
		m.SetUnit("s")
		if c.bounds == nil {
			h := m.SetEmptyExponentialHistogram()
			h.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
			for _, k := range keys {
				ser := c.series[k]
				l := pick(ser)
				if l.expo == nil {
					continue
				}
				dp := h.DataPoints().AppendEmpty()
				dp.SetStartTimestamp(start)
				dp.SetTimestamp(now)
				expoToDataPoint(l.expo, dp)
				ser.attrs.CopyTo(dp.Attributes())
			}
		} else {
			h := m.SetEmptyHistogram()
			h.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
			for _, k := range keys {
				ser := c.series[k]
				l := pick(ser)
				if l.count == 0 {
					continue
				}
				dp := h.DataPoints().AppendEmpty()
				dp.SetStartTimestamp(start)
				dp.SetTimestamp(now)
				dp.ExplicitBounds().FromRaw(c.bounds)
				dp.BucketCounts().FromRaw(l.counts)
				dp.SetCount(l.count)
				dp.SetSum(l.sum)
				ser.attrs.CopyTo(dp.Attributes())
			}
		}
		m.MoveTo(sm.Metrics().AppendEmpty())
	}
	hist("traces_service_graph_request_server", func(s *series) *latency { return &s.server })
	hist("traces_service_graph_request_client", func(s *series) *latency { return &s.client })
	return md
}

// expoToDataPoint copies an exponential histogram as upstream's pdatautil does: count,
// sum, min/max when not empty, zero count, scale and both bucket ranges.
func expoToDataPoint(h *structure.Histogram[float64], dp pmetric.ExponentialHistogramDataPoint) {
	dp.SetCount(h.Count())
	dp.SetSum(h.Sum())
	if h.Count() != 0 {
		dp.SetMin(h.Min())
		dp.SetMax(h.Max())
	}
	dp.SetZeroCount(h.ZeroCount())
	dp.SetScale(h.Scale())
	for _, half := range []struct {
		in  *structure.Buckets
		out pmetric.ExponentialHistogramDataPointBuckets
	}{{h.Positive(), dp.Positive()}, {h.Negative(), dp.Negative()}} {
		half.out.SetOffset(half.in.Offset())
		half.out.BucketCounts().EnsureCapacity(int(half.in.Len()))
		for i := uint32(0); i < half.in.Len(); i++ {
			half.out.BucketCounts().Append(half.in.At(i))
		}
	}
}
