// Package lifecycle runs a binary's components with one shape: each is
// created (New, which binds ports and validates), then Run(ctx) until the
// context ends, then Close. Components stop in reverse order of start.
package lifecycle

import (
	"context"
	"errors"
	"sync"
)

// Component is a long-running part of a binary.
type Component interface {
	Run(ctx context.Context) error
	Close() error
}

// Group runs components and owns their goroutines.
type Group struct {
	parts []Component
}

// Add appends components in start order.
func (g *Group) Add(c ...Component) { g.parts = append(g.parts, c...) }

// Run runs every component until ctx is cancelled or one of them fails;
// then it waits for every Run to return (each watches ctx) and only then
// closes them in reverse order, so no component is closed while its Run
// still uses it. Errors are joined.
func (g *Group) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, len(g.parts))
	for i, p := range g.parts {
		wg.Go(func() {
			if err := p.Run(ctx); err != nil {
				errs[i] = err
				cancel()
			}
		})
	}
	<-ctx.Done()
	wg.Wait()
	closeErr := g.Close()
	return errors.Join(append(errs, closeErr)...)
}

// Close closes every component in reverse order of start; it is safe to
// call more than once and without Run (to undo a partial start).
func (g *Group) Close() error {
	var errs []error
	for i := len(g.parts) - 1; i >= 0; i-- {
		if err := g.parts[i].Close(); err != nil {
			errs = append(errs, err)
		}
	}
	g.parts = nil
	return errors.Join(errs...)
}
