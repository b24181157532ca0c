package servicegraphconnector // import "exai.local/otelcol/servicegraphconnector"

import (
	"context"
	"time"

	"go.opentelemetry.io/collector/component"
	"go.opentelemetry.io/collector/connector"
	"go.opentelemetry.io/collector/consumer"
	"go.opentelemetry.io/collector/featuregate"
)

const (
	typeStr   = "servicegraph"
	stability = component.StabilityLevelAlpha

	virtualNodeFeatureGateID              = "connector.servicegraph.virtualNode"
	legacyLatencyMetricNamesFeatureGateID = "connector.servicegraph.legacyLatencyMetricNames"
	legacyLatencyUnitMsFeatureGateID      = "connector.servicegraph.legacyLatencyUnitMs"
)

// The same feature gates as upstream, so --feature-gates flags written for the contrib
// image are accepted here too.
var (
	virtualNodeFeatureGate = featuregate.GlobalRegistry().MustRegister(
		virtualNodeFeatureGateID, featuregate.StageAlpha,
		featuregate.WithRegisterDescription("When an edge expires unpaired, name the missing side from peer attributes (virtual node)."),
	)
	legacyMetricNamesFeatureGate = featuregate.GlobalRegistry().MustRegister(
		legacyLatencyMetricNamesFeatureGateID, featuregate.StageAlpha,
		featuregate.WithRegisterDescription("Use the legacy latency metric name traces_service_graph_request_duration."),
	)
	legacyLatencyUnitMsFeatureGate = featuregate.GlobalRegistry().MustRegister(
		legacyLatencyUnitMsFeatureGateID, featuregate.StageAlpha,
		featuregate.WithRegisterDescription("Report latency in milliseconds instead of seconds."),
	)
)

// NewFactory returns the servicegraph connector factory (traces -> metrics).
func NewFactory() connector.Factory {
	return connector.NewFactory(
		component.MustNewType(typeStr),
		createDefaultConfig,
		connector.WithTracesToMetrics(createTracesToMetrics, stability),
	)
}

func createDefaultConfig() component.Config {
	return &Config{
		Store: StoreConfig{
			TTL:      2 * time.Second,
			MaxItems: 1000,
		},
		CacheLoop:           time.Minute,
		StoreExpirationLoop: 2 * time.Second,
	}
}

func createTracesToMetrics(_ context.Context, set connector.Settings, cfg component.Config, next consumer.Metrics) (connector.Traces, error) {
	return newConnector(set.TelemetrySettings, cfg.(*Config), next)
}
