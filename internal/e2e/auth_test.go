package e2e

import (
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// apiTokens maps a central's host to the API token its requests carry:
// the API needs authentication, like every other client of it.
var apiTokens sync.Map

// grantAPI creates a token-only admin account in the store of the central
// at base with the CLI (as an operator would) and makes apiGet and apiPost
// use its token for base and the other bases given (replicas of one store).
func grantAPI(t testing.TB, bin string, env []string, cfgPath string, bases ...string) {
	t.Helper()
	central := filepath.Join(bin, "xl-central")
	if out, err := execCombinedEnv(env, central, "user", "add", "--config", cfgPath, "--username", "e2e", "--role", "admin", "--no-password"); err != nil {
		t.Fatalf("user add: %v: %s", err, out)
	}
	out, err := execCombinedEnvStdout(env, central, "user", "token", "--config", cfgPath, "--username", "e2e", "--name", "e2e")
	if err != nil {
		t.Fatalf("user token: %v: %s", err, out)
	}
	tok := strings.TrimSpace(string(out))
	if !strings.HasPrefix(tok, "xlt_") {
		t.Fatalf("user token printed %q", tok)
	}
	for _, b := range bases {
		u, _ := url.Parse(b)
		apiTokens.Store(u.Host, tok)
	}
}

func apiRequest(method, rawURL, contentType string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequest(method, rawURL, body)
	if err != nil {
		return nil, err
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if tok, ok := apiTokens.Load(req.URL.Host); ok {
		req.Header.Set("Authorization", "Bearer "+tok.(string))
	}
	return http.DefaultClient.Do(req)
}

func apiGet(rawURL string) (*http.Response, error) { return apiRequest("GET", rawURL, "", nil) }

func apiPost(rawURL, contentType string, body io.Reader) (*http.Response, error) {
	return apiRequest("POST", rawURL, contentType, body)
}
