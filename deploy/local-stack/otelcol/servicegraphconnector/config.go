// Package servicegraphconnector is a small, self-contained implementation of the
// `servicegraph` connector (traces -> metrics) for the EXAI local collector build.
//
// Why it exists: the contrib module
// github.com/open-telemetry/opentelemetry-collector-contrib/connector/servicegraphconnector
// is not served by the Go module proxy reachable from this project's machines, so the
// no-Docker stack cannot link it. The Docker stack uses the official
// otel/opentelemetry-collector-contrib:0.161.0 image, which ships the upstream connector.
//
// Both stacks run the same otel-collector.yaml, so this package behaves as contrib
// v0.161.0 does for the same spans: the same configuration keys and defaults, the same
// series (traces_service_graph_request_total, …_failed_total, and the histograms
// traces_service_graph_request_server / …_client in seconds) with the same labels
// (client, server, connection_type, failed, client_<dim>/server_<dim>, virtual_node),
// virtual nodes always on (upstream's connector.servicegraph.virtualNode gate is stable),
// database edges from database_name_attributes, and the same store/TTL semantics.
// connector_test.go pins each behaviour. It is written from the upstream sources'
// behaviour, not copied from them.
package servicegraphconnector // import "exai.local/otelcol/servicegraphconnector"

import (
	"errors"
	"time"
)

// Config has the same keys as the upstream servicegraph connector.
type Config struct {
	// LatencyHistogramBuckets are explicit bucket bounds (durations) for the latency histograms.
	LatencyHistogramBuckets []time.Duration `mapstructure:"latency_histogram_buckets"`
	// ExponentialHistogramMaxSize switches to exponential histograms with this max bucket count.
	ExponentialHistogramMaxSize int32 `mapstructure:"exponential_histogram_max_size"`
	// Dimensions are extra attributes (resource first, then span) added as client_<dim>/server_<dim>.
	Dimensions []string `mapstructure:"dimensions"`
	// Store configures the in-memory store pairing client and server spans.
	Store StoreConfig `mapstructure:"store"`
	// CacheLoop is how often series not updated for 15 minutes are dropped.
	CacheLoop time.Duration `mapstructure:"cache_loop"`
	// StoreExpirationLoop is how often unpaired edges are expired from the store.
	StoreExpirationLoop time.Duration `mapstructure:"store_expiration_loop"`
	// VirtualNodePeerAttributes are checked, in order, to name the missing server of an
	// expired client edge; unset means peer.service, db.name, db.system; an empty list
	// turns virtual nodes off.
	VirtualNodePeerAttributes []string `mapstructure:"virtual_node_peer_attributes"`
	// VirtualNodeExtraLabel adds the virtual_node label (client|server) to virtual edges.
	VirtualNodeExtraLabel bool `mapstructure:"virtual_node_extra_label"`
	// MetricsFlushInterval: how often metrics are emitted; 0 = on every batch; default 60s.
	MetricsFlushInterval *time.Duration `mapstructure:"metrics_flush_interval"`
	// MetricsTimestampOffset is subtracted from the data point timestamps.
	MetricsTimestampOffset time.Duration `mapstructure:"metrics_timestamp_offset"`
	// DatabaseNameAttributes: first matching attribute makes a client span a database edge.
	DatabaseNameAttributes []string `mapstructure:"database_name_attributes"`
}

// StoreConfig configures the edge store.
type StoreConfig struct {
	// MaxItems is the maximum number of unpaired edges kept.
	MaxItems int `mapstructure:"max_items"`
	// TTL is how long an edge waits for its other side.
	TTL time.Duration `mapstructure:"ttl"`
}

// Validate checks the configuration.
func (c *Config) Validate() error {
	if c.LatencyHistogramBuckets == nil && c.ExponentialHistogramMaxSize < 0 {
		return errors.New("`exponential_histogram_max_size` can not be negative")
	}
	if c.LatencyHistogramBuckets != nil && c.ExponentialHistogramMaxSize > 0 {
		return errors.New("use either `latency_histogram_buckets` or `exponential_histogram_max_size`")
	}
	if c.Store.MaxItems < 0 {
		return errors.New("`store.max_items` can not be negative")
	}
	if c.MetricsTimestampOffset < 0 {
		return errors.New("`metrics_timestamp_offset` can not be negative")
	}
	return nil
}
