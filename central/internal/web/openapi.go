package web

import (
	_ "embed"
	"net/http"
)

// openAPI is the hand-maintained OpenAPI 3 document of /api/v1; a test
// checks that it lists exactly the registered routes.
//
//go:embed openapi.json
var openAPI []byte

func serveOpenAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write(openAPI)
}
