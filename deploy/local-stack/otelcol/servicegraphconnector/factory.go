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

	// The upstream module path: used as the instrumentation scope of the connector's own
	// telemetry so otelcol_connector_servicegraph_* look the same in both stacks.
	upstreamScope = "github.com/open-telemetry/opentelemetry-collector-contrib/connector/servicegraphconnector"
)

// The upstream gates, registered at the stages contrib v0.161.0 has them, so a
// --feature-gates flag behaves the same in both stacks: virtualNode is stable (always on,
// `-connector.servicegraph.virtualNode` is an error) and the two legacy gates are
// deprecated (always off, enabling one is an error). The code below therefore has no
// gated paths: virtual nodes are always built, latency is always in seconds under the
// current metric names.
var (
	_ = featuregate.GlobalRegistry().MustRegister(
		"connector.servicegraph.virtualNode", featuregate.StageStable,
		featuregate.WithRegisterDescription("When enabled and setting `virtual_node_peer_attributes` is not empty, the connector looks for the presence of these attributes in span to create virtual server nodes."),
		featuregate.WithRegisterReferenceURL("https://github.com/open-telemetry/opentelemetry-collector-contrib/issues/17196"),
		featuregate.WithRegisterFromVersion("v0.73.0"),
		featuregate.WithRegisterToVersion("v0.154.0"),
	)
	_ = featuregate.GlobalRegistry().MustRegister(
		"connector.servicegraph.legacyLatencyMetricNames", featuregate.StageDeprecated,
		featuregate.WithRegisterDescription("When enabled, connector uses legacy latency metric names."),
		featuregate.WithRegisterReferenceURL("https://github.com/open-telemetry/opentelemetry-collector-contrib/issues/18743"),
		featuregate.WithRegisterFromVersion("v0.80.0"),
		featuregate.WithRegisterToVersion("v0.154.0"),
	)
	_ = featuregate.GlobalRegistry().MustRegister(
		"connector.servicegraph.legacyLatencyUnitMs", featuregate.StageDeprecated,
		featuregate.WithRegisterDescription("When enabled, connector reports latency in milliseconds, instead of seconds."),
		featuregate.WithRegisterReferenceURL("https://github.com/open-telemetry/opentelemetry-collector-contrib/issues/27488"),
		featuregate.WithRegisterFromVersion("v0.89.0"),
		featuregate.WithRegisterToVersion("v0.154.0"),
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
