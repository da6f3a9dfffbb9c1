package web

import (
	"context"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/xueliang/xl/central/internal/routing"
	"github.com/xueliang/xl/central/internal/store"
)

func init() { bcryptCost = bcrypt.MinCost } // the cost is bcrypt's business, not these tests

// tokens maps a test server's host to the API token its requests carry,
// so that the route tests read as plain GETs and POSTs with auth on.
var tokens sync.Map

type tokenTransport struct{}

func (tokenTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if tok, ok := tokens.Load(r.URL.Host); ok && r.Header.Get("Authorization") == "" {
		r = r.Clone(r.Context())
		r.Header.Set("Authorization", "Bearer "+tok.(string))
	}
	return http.DefaultTransport.RoundTrip(r)
}

// client sends the admin token of the server it talks to.
var client = &http.Client{Transport: tokenTransport{}}

// adminFor creates an admin user with a token and makes client use it for
// srvURL.
func adminFor(t *testing.T, us Users, srvURL string) {
	t.Helper()
	if _, err := NewUser(context.Background(), us, store.User{Username: "root", Role: store.RoleAdmin}, ""); err != nil {
		t.Fatal(err)
	}
	tok := tokenFor(t, us, "root")
	u, _ := url.Parse(srvURL)
	tokens.Store(u.Host, tok)
	t.Cleanup(func() { tokens.Delete(u.Host) })
}

func tokenFor(t testing.TB, us Users, username string) string {
	t.Helper()
	tok, _, err := NewToken(context.Background(), us, username, "test")
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// testRouting is the reference case in small: illegal fishing at the
// Lixin sluice goes to the agricultural brigade (lead) and the river
// police (support), dispatched at once.
func testRouting() routing.Config {
	return routing.Config{
		Agencies:    []routing.AgencyConfig{{ID: "agri-brigade", NameZH: "农业执法", Level: "district"}, {ID: "river-police", NameZH: "水上派出所", Level: "district"}},
		Grids:       []routing.GridConfig{{Code: "HM", NameZH: "海门"}, {Code: "HM-ZY-QZ-03", NameZH: "三网格", Parent: "HM"}},
		Cameras:     []routing.CameraConfig{{ID: "lixin-sluice-east", Grid: "HM-ZY-QZ-03"}},
		SLAProfiles: []routing.SLAProfileConfig{{Name: "standard", Accept: 5 * time.Minute}},
		Rules: []routing.RuleConfig{{Match: routing.MatchConfig{Types: []string{"illegal_fishing"}},
			Result: routing.ResultConfig{Lead: "agri-brigade", Support: []string{"river-police"}, SLAProfile: "standard", Dispatch: "auto"}}},
	}
}
