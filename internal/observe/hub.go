package observe

import (
	"sync"

	"github.com/cloudcron/scheduler/internal/audit"
)

// Batch is one durable step of the audit log: the records one Append or
// AppendBatch wrote, or, when Err is set, the records it failed to write.
type Batch struct {
	Records []audit.Record
	Err     error
}

// Sink consumes the record stream. Observe runs on the hub's goroutine,
// one batch at a time, in log order; a slow sink delays the other sinks,
// never a fire, so a sink with slow work (a webhook) queues it.
type Sink interface {
	Observe(Batch)
}

// SinkFunc adapts a function to Sink.
type SinkFunc func(Batch)

// Observe calls f.
func (f SinkFunc) Observe(b Batch) { f(b) }

// maxQueued bounds the batches waiting for the sinks. Past it the oldest
// are dropped (and counted): the audit log has them all, the sinks are a
// view of it.
const maxQueued = 100_000

// Hub is the fan-out of the record stream: the audit log calls Publish
// after each durable write (audit.Log.Subscribe), and one goroutine hands
// every batch to each sink in order. Publish never blocks on a sink.
type Hub struct {
	sinks []Sink

	mu      sync.Mutex
	cond    *sync.Cond
	queue   []Batch
	taken   uint64 // batches published
	done    uint64 // batches delivered to every sink (or dropped)
	dropped uint64
	closed  bool
	exited  chan struct{}
}

// NewHub starts a hub that feeds sinks, in the order given.
func NewHub(sinks ...Sink) *Hub {
	h := &Hub{sinks: sinks, exited: make(chan struct{})}
	h.cond = sync.NewCond(&h.mu)
	go h.loop()
	return h
}

// Publish queues a batch for the sinks and returns at once. It matches
// audit.Log.Subscribe's callback. After Close it does nothing.
func (h *Hub) Publish(recs []audit.Record, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	if len(h.queue) >= maxQueued {
		h.queue = h.queue[1:]
		h.dropped++
		h.done++
	}
	h.queue = append(h.queue, Batch{Records: recs, Err: err})
	h.taken++
	h.cond.Broadcast()
}

// Dropped returns how many batches were dropped because the sinks fell
// behind by more than maxQueued batches.
func (h *Hub) Dropped() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.dropped
}

// Sync returns once every batch published before the call has been
// handed to every sink (or the hub is closed).
func (h *Hub) Sync() {
	h.mu.Lock()
	defer h.mu.Unlock()
	want := h.taken
	for h.done < want && !h.closed {
		h.cond.Wait()
	}
}

// Close delivers what is queued, then stops the hub's goroutine.
func (h *Hub) Close() {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		<-h.exited
		return
	}
	h.closed = true
	h.cond.Broadcast()
	h.mu.Unlock()
	<-h.exited
}

func (h *Hub) loop() {
	defer close(h.exited)
	h.mu.Lock()
	for {
		for len(h.queue) == 0 && !h.closed {
			h.cond.Wait()
		}
		if len(h.queue) == 0 {
			h.mu.Unlock()
			return
		}
		b := h.queue[0]
		h.queue[0] = Batch{}
		h.queue = h.queue[1:]
		h.mu.Unlock()
		for _, s := range h.sinks {
			s.Observe(b)
		}
		h.mu.Lock()
		h.done++
		h.cond.Broadcast()
	}
}
