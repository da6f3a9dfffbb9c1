package config

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
)

// Problems collects validation errors.
type Problems struct{ list []FieldError }

// Add records a problem at key.
func (p *Problems) Add(key, format string, args ...any) {
	p.list = append(p.list, FieldError{Key: key, Msg: fmt.Sprintf(format, args...)})
}

// Merge records problems found by a nested validator, under prefix.
func (p *Problems) Merge(prefix string, list []FieldError) {
	for _, e := range list {
		if prefix != "" {
			if e.Key == "" {
				e.Key = prefix
			} else {
				e.Key = prefix + "." + e.Key
			}
		}
		p.list = append(p.list, e)
	}
}

// List returns the problems recorded.
func (p *Problems) List() []FieldError { return p.list }

// HostPort checks a listen or dial address of the form host:port. Port 0
// is allowed only when allowZero is true.
func (p *Problems) HostPort(key, addr string, allowZero bool) {
	if addr == "" {
		p.Add(key, "required (host:port)")
		return
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		p.Add(key, "%q is not host:port", addr)
		return
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 || (n == 0 && !allowZero) {
		p.Add(key, "%q has no valid port", addr)
	}
}

// URL checks that s parses as a URL with one of the schemes given.
func (p *Problems) URL(key, s string, schemes ...string) *url.URL {
	if s == "" {
		p.Add(key, "required")
		return nil
	}
	u, err := url.Parse(s)
	if err != nil {
		p.Add(key, "not a URL: %v", err)
		return nil
	}
	for _, sc := range schemes {
		if u.Scheme == sc {
			if u.Host == "" && sc != "file" {
				p.Add(key, "%q has no host", s)
				return nil
			}
			return u
		}
	}
	p.Add(key, "scheme %q is not one of %v", u.Scheme, schemes)
	return nil
}

// OneOf checks that s is one of the allowed values.
func (p *Problems) OneOf(key, s string, allowed ...string) {
	for _, a := range allowed {
		if s == a {
			return
		}
	}
	p.Add(key, "%q is not one of %v", s, allowed)
}
