package servicegraphconnector // import "exai.local/otelcol/servicegraphconnector"

import (
	"container/list"
	"errors"
	"sync"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
)

type connectionType string

const (
	connUnknown     connectionType = ""
	connMessaging   connectionType = "messaging_system"
	connDatabase    connectionType = "database"
	connVirtualNode connectionType = "virtual_node"
)

var errTooManyItems = errors.New("too many items")

// edgeKey identifies a request: the trace and the span ID of the client span
// (for a server span: its parent span ID).
type edgeKey struct {
	traceID pcommon.TraceID
	spanID  pcommon.SpanID
}

type edge struct {
	key            edgeKey
	connectionType connectionType
	clientService  string
	serverService  string
	clientLatency  float64
	serverLatency  float64
	failed         bool
	dimensions     map[string]string
	peer           map[string]string
	virtualNode    string // "", "client" or "server"
	expiresAt      time.Time
}

// complete: both sides are named (an empty service.name never completes an edge).
func (e *edge) complete() bool { return e.clientService != "" && e.serverService != "" }

// store keeps unpaired edges in insertion order so expiry is a walk from the front.
type store struct {
	mu         sync.Mutex
	order      *list.List
	byKey      map[edgeKey]*list.Element
	ttl        time.Duration
	maxItems   int
	onComplete func(*edge)
	onExpire   func(*edge)
	now        func() time.Time
}

func newStore(ttl time.Duration, maxItems int, onComplete, onExpire func(*edge)) *store {
	return &store{
		order:      list.New(),
		byKey:      make(map[edgeKey]*list.Element),
		ttl:        ttl,
		maxItems:   maxItems,
		onComplete: onComplete,
		onExpire:   onExpire,
		now:        time.Now,
	}
}

// upsertEdge applies update to the edge for key (creating it if needed). A complete
// edge is handed to onComplete and leaves the store. It returns whether the edge is new.
//
// As upstream: an edge complete on its first span (a database call) is recorded even when
// the store is full, and the limit is `len >= max_items` (so max_items 0 drops every edge
// that would have to wait for its other side).
func (s *store) upsertEdge(key edgeKey, update func(*edge)) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()

	if el, ok := s.byKey[key]; ok {
		e := el.Value.(*edge)
		update(e)
		if e.complete() {
			s.onComplete(e)
			s.order.Remove(el)
			delete(s.byKey, key)
		}
		return false, nil
	}

	e := &edge{
		key:        key,
		dimensions: map[string]string{},
		peer:       map[string]string{},
		expiresAt:  s.now().Add(s.ttl),
	}
	update(e)
	if e.complete() {
		s.onComplete(e)
		return true, nil
	}
	if s.order.Len() >= s.maxItems {
		return false, errTooManyItems
	}
	s.byKey[key] = s.order.PushBack(e)
	return true, nil
}

// expire removes the edges whose TTL has passed (strictly after their expiry time) and
// hands them to onExpire.
func (s *store) expire() {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	for el := s.order.Front(); el != nil; el = s.order.Front() {
		e := el.Value.(*edge)
		if !now.After(e.expiresAt) {
			return
		}
		s.onExpire(e)
		s.order.Remove(el)
		delete(s.byKey, e.key)
	}
}

func (s *store) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.order.Len()
}
