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
	scopeName       = "traces_service_graph"
	staleSeriesAge  = 15 * time.Minute
	defaultFlushInt = 60 * time.Second
)

var (
	defaultBucketsSeconds = []float64{0.002, 0.004, 0.006, 0.008, 0.01, 0.05, 0.1, 0.2, 0.4, 0.8, 1, 1.4, 2, 5, 10, 15}
	defaultBucketsMs      = []float64{2, 4, 6, 8, 10, 50, 100, 200, 400, 800, 1000, 1400, 2000, 5000, 10_000, 15_000}
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
	unit     string
	flushInt time.Duration

	store     *store
	startTime time.Time

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
		unit:       "s",
		flushInt:   defaultFlushInt,
		startTime:  time.Now(),
		series:     map[string]*series{},
		shutdownCh: make(chan struct{}),
	}
	if legacyLatencyUnitMsFeatureGate.IsEnabled() {
		c.unit = "ms"
	}
	if cfg.ExponentialHistogramMaxSize == 0 {
		switch {
		case cfg.LatencyHistogramBuckets != nil:
			c.bounds = make([]float64, len(cfg.LatencyHistogramBuckets))
			for i, d := range cfg.LatencyHistogramBuckets {
				c.bounds[i] = c.durationValue(d)
			}
		case c.unit == "ms":
			c.bounds = defaultBucketsMs
		default:
			c.bounds = defaultBucketsSeconds
		}
	}
	if cfg.CacheLoop <= 0 {
		cfg.CacheLoop = time.Minute
	}
	if cfg.StoreExpirationLoop <= 0 {
		cfg.StoreExpirationLoop = 2 * time.Second
	}
	if cfg.VirtualNodePeerAttributes == nil {
		cfg.VirtualNodePeerAttributes = defaultPeerAttributes
	}
	if len(cfg.DatabaseNameAttributes) == 0 {
		cfg.DatabaseNameAttributes = defaultDBNameAttrs
	}
	if cfg.MetricsFlushInterval != nil {
		c.flushInt = *cfg.MetricsFlushInterval
	}

	meter := set.MeterProvider.Meter("exai.local/otelcol/servicegraphconnector")
	var err error
	if c.droppedSpans, err = meter.Int64Counter("otelcol_connector_servicegraph_dropped_spans",
		metric.WithDescription("Number of spans dropped when trying to add edges"), metric.WithUnit("{span}")); err != nil {
		return nil, err
	}
	if c.totalEdges, err = meter.Int64Counter("otelcol_connector_servicegraph_total_edges",
		metric.WithDescription("Total number of unique edges"), metric.WithUnit("{edge}")); err != nil {
		return nil, err
	}
	if c.expiredEdges, err = meter.Int64Counter("otelcol_connector_servicegraph_expired_edges",
		metric.WithDescription("Number of edges that expired before finding its matching span"), metric.WithUnit("{edge}")); err != nil {
		return nil, err
	}
	c.store = newStore(cfg.Store.TTL, cfg.Store.MaxItems, c.onComplete, c.onExpire)
	return c, nil
}

func (c *serviceGraphConnector) durationValue(d time.Duration) float64 {
	if c.unit == "ms" {
		return float64(d) / float64(time.Millisecond)
	}
	return d.Seconds()
}

func (c *serviceGraphConnector) spanLatency(s ptrace.Span) float64 {
	start, end := s.StartTimestamp(), s.EndTimestamp()
	if end < start {
		return 0
	}
	return c.durationValue(time.Duration(end - start))
}

// Start launches the flush, store-expiry and stale-series loops.
func (c *serviceGraphConnector) Start(context.Context, component.Host) error {
	c.every(c.cfg.StoreExpirationLoop, c.store.expire)
	c.every(c.cfg.CacheLoop, c.cleanStaleSeries)
	if c.flushInt > 0 {
		c.every(c.flushInt, func() {
			if err := c.flush(context.Background()); err != nil {
				c.logger.Error("failed to flush service graph metrics", zap.Error(err))
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
		svc, ok := resAttrs.Get("service.name")
		if !ok || svc.AsString() == "" {
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
			c.logger.Error("failed to flush service graph metrics", zap.Error(err))
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
			e.clientLatency = c.spanLatency(span)
			e.failed = e.failed || failed
			c.putDimensions(clientKind, e.dimensions, resAttrs, span.Attributes())
			if virtualNodeFeatureGate.IsEnabled() {
				if k, v, ok := firstMatch(c.cfg.VirtualNodePeerAttributes, span.Attributes()); ok {
					e.peer[k] = v
				}
			}
			// A database call has no server span: the client span stands for both sides.
			if _, db, ok := firstMatch(c.cfg.DatabaseNameAttributes, resAttrs, span.Attributes()); ok {
				e.connectionType = connDatabase
				e.serverService = db
				e.serverLatency = e.clientLatency
			}
		})
	case ptrace.SpanKindConsumer, ptrace.SpanKindServer:
		if span.Kind() == ptrace.SpanKindConsumer {
			conn = connMessaging
		}
		isNew, err = c.store.upsertEdge(edgeKey{span.TraceID(), span.ParentSpanID()}, func(e *edge) {
			e.connectionType = conn
			e.serverService = serviceName
			e.serverLatency = c.spanLatency(span)
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

func (c *serviceGraphConnector) putDimensions(kind string, dst map[string]string, maps ...pcommon.Map) {
	for _, dim := range c.cfg.Dimensions {
		if _, v, ok := firstMatch([]string{dim}, maps...); ok {
			dst[kind+"_"+dim] = v
		}
	}
}

// firstMatch returns the first of keys found in the first map that has it, in order of keys.
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

func (c *serviceGraphConnector) onExpire(e *edge) {
	c.expiredEdges.Add(context.Background(), 1)
	if !virtualNodeFeatureGate.IsEnabled() || len(c.cfg.VirtualNodePeerAttributes) == 0 {
		return
	}
	e.connectionType = connVirtualNode
	if e.clientService == "" && e.key.spanID.IsEmpty() {
		// A root server span: the caller is outside the traced system.
		e.clientService = "user"
		if c.cfg.VirtualNodeExtraLabel {
			e.virtualNode = clientKind
		}
		c.onComplete(e)
	}
	if e.serverService == "" {
		e.serverService = "unknown"
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

func (c *serviceGraphConnector) onComplete(e *edge) {
	failed := strconv.FormatBool(e.failed)
	var key strings.Builder
	key.WriteString(e.clientService + keySep + e.serverService + keySep + string(e.connectionType) + keySep + failed)
	for _, dim := range c.cfg.Dimensions {
		for _, kind := range []string{clientKind, serverKind} {
			if v, ok := e.dimensions[kind+"_"+dim]; ok {
				key.WriteString(keySep + kind + "_" + dim + "=" + v)
			}
		}
	}
	if c.cfg.VirtualNodeExtraLabel {
		key.WriteString(keySep + "virtual_node=" + e.virtualNode)
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	s, ok := c.series[key.String()]
	if !ok {
		attrs := pcommon.NewMap()
		attrs.PutStr("client", e.clientService)
		attrs.PutStr("server", e.serverService)
		attrs.PutStr("connection_type", string(e.connectionType))
		attrs.PutBool("failed", e.failed)
		for k, v := range e.dimensions {
			attrs.PutStr(k, v)
		}
		if c.cfg.VirtualNodeExtraLabel {
			attrs.PutStr("virtual_node", e.virtualNode)
		}
		s = &series{attrs: attrs}
		c.series[key.String()] = s
	}
	s.lastUpdated = time.Now()
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

func (c *serviceGraphConnector) cleanStaleSeries() {
	c.mu.Lock()
	defer c.mu.Unlock()
	cutoff := time.Now().Add(-staleSeriesAge)
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
	md := pmetric.NewMetrics()
	sm := md.ResourceMetrics().AppendEmpty().ScopeMetrics().AppendEmpty()
	sm.Scope().SetName(scopeName)

	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.series) == 0 {
		return pmetric.NewMetrics()
	}
	start := pcommon.NewTimestampFromTime(c.startTime)
	now := pcommon.NewTimestampFromTime(time.Now().Add(-c.cfg.MetricsTimestampOffset))

	keys := make([]string, 0, len(c.series))
	for k := range c.series {
		keys = append(keys, k)
	}
	sort.Strings(keys)

	sum := func(name string, value func(*series) int64, skipZero bool) {
		m := pmetric.NewMetric()
		m.SetName(name)
		s := m.SetEmptySum()
		s.SetIsMonotonic(true)
		s.SetAggregationTemporality(pmetric.AggregationTemporalityCumulative)
		for _, k := range keys {
			ser := c.series[k]
			v := value(ser)
			if skipZero && v == 0 {
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
	sum("traces_service_graph_request_total", func(s *series) int64 { return s.total }, false)
	sum("traces_service_graph_request_failed_total", func(s *series) int64 { return s.failed }, true)

	hist := func(name string, pick func(*series) *latency) {
		m := pmetric.NewMetric()
		m.SetName(name)
		m.SetUnit(c.unit)
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
				dp.SetCount(l.expo.Count())
				dp.SetSum(l.expo.Sum())
				dp.SetScale(l.expo.Scale())
				dp.SetZeroCount(l.expo.ZeroCount())
				pos := l.expo.Positive()
				dp.Positive().SetOffset(pos.Offset())
				counts := make([]uint64, pos.Len())
				for i := range counts {
					counts[i] = pos.At(uint32(i))
				}
				dp.Positive().BucketCounts().FromRaw(counts)
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
	if legacyMetricNamesFeatureGate.IsEnabled() {
		hist("traces_service_graph_request_duration", func(s *series) *latency { return &s.server })
	} else {
		hist("traces_service_graph_request_server", func(s *series) *latency { return &s.server })
		hist("traces_service_graph_request_client", func(s *series) *latency { return &s.client })
	}
	return md
}
