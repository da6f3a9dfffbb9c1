package queue

import (
	"context"
	"sync"
	"testing"
	"time"
)

func TestDropOldest(t *testing.T) {
	var freed []int
	q := New(3, func(v int) { freed = append(freed, v) })
	for i := 1; i <= 5; i++ {
		q.Push(i)
	}
	if q.Len() != 3 || q.Dropped() != 2 {
		t.Fatalf("len %d dropped %d, want 3 and 2", q.Len(), q.Dropped())
	}
	if len(freed) != 2 || freed[0] != 1 || freed[1] != 2 {
		t.Fatalf("freed %v, want the two oldest [1 2]", freed)
	}
	for want := 3; want <= 5; want++ {
		v, ok := q.TryPop()
		if !ok || v != want {
			t.Fatalf("pop %d %v, want %d", v, ok, want)
		}
	}
	if _, ok := q.TryPop(); ok {
		t.Fatal("pop from empty queue")
	}
	q.Push(6)
	q.Close()
	if len(freed) != 3 || freed[2] != 6 {
		t.Fatalf("close did not free what was left: %v", freed)
	}
	if !q.Push(7) || freed[3] != 7 {
		t.Fatal("push after close must drop")
	}
}

func TestPopWaitsAndCancels(t *testing.T) {
	q := New[int](2, nil)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	got := make(chan int, 10)
	go func() {
		defer wg.Done()
		for {
			v, ok := q.Pop(ctx)
			if !ok {
				return
			}
			got <- v
		}
	}()
	q.Push(1)
	select {
	case v := <-got:
		if v != 1 {
			t.Fatalf("got %d", v)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Pop did not wake up")
	}
	cancel()
	wg.Wait()
}

func TestConcurrentProducers(t *testing.T) {
	q := New[int](64, nil)
	var wg sync.WaitGroup
	for p := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 1000 {
				q.Push(p*1000 + i)
			}
		}()
	}
	wg.Wait()
	if q.Len()+int(q.Dropped()) != 4000 {
		t.Fatalf("len %d + dropped %d != 4000", q.Len(), q.Dropped())
	}
}
