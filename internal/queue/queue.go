// Package queue is a bounded FIFO that never blocks its producer: when full,
// it drops the oldest item, hands it to a drop callback (to free it) and
// counts it.
package queue

import (
	"context"
	"sync"
)

// DropOldest is a bounded FIFO safe for one or more producers and consumers.
type DropOldest[T any] struct {
	mu      sync.Mutex
	items   []T
	head, n int
	notify  chan struct{}
	onDrop  func(T)
	dropped uint64
	closed  bool
}

// New returns a queue holding at most capacity items; onDrop (may be nil)
// receives every item dropped or left over at Close.
func New[T any](capacity int, onDrop func(T)) *DropOldest[T] {
	if capacity < 1 {
		capacity = 1
	}
	return &DropOldest[T]{items: make([]T, capacity), notify: make(chan struct{}, 1), onDrop: onDrop}
}

// Push adds v; if the queue is full the oldest item is dropped. It reports
// whether an item was dropped. After Close, v itself is dropped.
func (q *DropOldest[T]) Push(v T) (dropped bool) {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		q.drop(v)
		return true
	}
	var old T
	if q.n == len(q.items) {
		old = q.items[q.head]
		var zero T
		q.items[q.head] = zero
		q.head = (q.head + 1) % len(q.items)
		q.n--
		q.dropped++
		dropped = true
	}
	q.items[(q.head+q.n)%len(q.items)] = v
	q.n++
	q.mu.Unlock()
	if dropped {
		q.drop(old)
	}
	select {
	case q.notify <- struct{}{}:
	default:
	}
	return dropped
}

func (q *DropOldest[T]) drop(v T) {
	if q.onDrop != nil {
		q.onDrop(v)
	}
}

// TryPop returns the oldest item without waiting.
func (q *DropOldest[T]) TryPop() (T, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	var zero T
	if q.n == 0 {
		return zero, false
	}
	v := q.items[q.head]
	q.items[q.head] = zero
	q.head = (q.head + 1) % len(q.items)
	q.n--
	return v, true
}

// Pop waits for an item until ctx is done.
func (q *DropOldest[T]) Pop(ctx context.Context) (T, bool) {
	for {
		if v, ok := q.TryPop(); ok {
			return v, true
		}
		select {
		case <-q.notify:
		case <-ctx.Done():
			var zero T
			return zero, false
		}
	}
}

// Len is the number of items waiting.
func (q *DropOldest[T]) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.n
}

// Dropped is the number of items dropped because the queue was full.
func (q *DropOldest[T]) Dropped() uint64 {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.dropped
}

// Close drops everything still queued and makes later pushes drop.
func (q *DropOldest[T]) Close() {
	q.mu.Lock()
	q.closed = true
	var left []T
	for q.n > 0 {
		left = append(left, q.items[q.head])
		q.head = (q.head + 1) % len(q.items)
		q.n--
	}
	q.mu.Unlock()
	for _, v := range left {
		q.drop(v)
	}
}
