// Package web serves central's JSON API and console.
package web

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/xueliang/xl/central/internal/store"
	"github.com/xueliang/xl/internal/wire"
)

// Reader is what the API reads from central's store.
type Reader interface {
	ListAlerts(ctx context.Context, f store.AlertFilter) ([]store.AlertRecord, error)
	GetAlert(ctx context.Context, alertID string) (store.AlertRecord, error)
	GetEvidence(ctx context.Context, alertID string, kind wire.EvidenceKind) (store.Evidence, error)
	ListAgents(ctx context.Context) ([]store.AgentRecord, error)
}

//go:embed console
var consoleFS embed.FS

// Commander sends commands to agents.
type Commander interface {
	Command(ctx context.Context, agentID string, c wire.Cmd) (*wire.CmdReply, error)
}

// MaxPageSize is the largest page of alerts one request returns.
const MaxPageSize = 1000

// API serves /api/v1 and the console.
type API struct {
	r   Reader
	cmd Commander
	log *slog.Logger
	inc Incidents    // nil: no incident routes
	tr  Transitioner // nil: orders are read-only

	eg       Egress // nil: no delivery routes
	egNotify func()

	users   Users // nil: no authentication (tests of single routes only)
	authOpt AuthOptions
	limiter *limiter
	routes  []string

	hub    Hub            // nil: no live updates
	photos Photos         // nil: no order photos
	places Places         // cameras and agencies of the routing configuration
	agency map[string]int // agency IDs known to the routing, for validation
	limits Limits         // zero: DefaultLimits
}

// New returns the API over r; cmd may be nil (no command route).
func New(r Reader, cmd Commander, log *slog.Logger) *API {
	return &API{r: r, cmd: cmd, log: log.With("component", "web")}
}

// Register adds the routes to mux. The role matrix is in README.md.
func (a *API) Register(mux *http.ServeMux) {
	if a.users != nil {
		a.handle(mux, "POST /api/v1/session", nil, a.login)
		a.handle(mux, "GET /api/v1/session", anyRole, a.getSession)
		a.handle(mux, "DELETE /api/v1/session", anyRole, a.logout)
		a.handle(mux, "GET /api/v1/users", adminOnly, a.listUsers)
		a.handle(mux, "POST /api/v1/users", adminOnly, a.createUser)
		a.handle(mux, "POST /api/v1/users/{username}/tokens", adminOnly, a.createToken)
	}
	a.handle(mux, "GET /api/v1/alerts", staffRoles, a.listAlerts)
	a.handle(mux, "GET /api/v1/alerts/{alert_id}", staffRoles, a.getAlert)
	a.handle(mux, "GET /api/v1/alerts/{alert_id}/snapshot.jpg", staffRoles, a.evidence(wire.EvidenceSnapshot, "image/jpeg"))
	a.handle(mux, "GET /api/v1/alerts/{alert_id}/clip.mp4", staffRoles, a.evidence(wire.EvidenceClip, "video/mp4"))
	a.handle(mux, "GET /api/v1/agents", staffRoles, a.listAgents)
	if a.cmd != nil {
		a.handle(mux, "POST /api/v1/agents/{agent_id}/commands", opsRoles, a.command)
	}
	a.handle(mux, "GET /api/v1/cameras", staffRoles, a.listCameras)
	a.handle(mux, "GET /api/v1/agencies", anyRole, a.listAgencies)
	a.registerDispatch(mux)
	a.registerEgress(mux)
	if a.hub != nil {
		a.handle(mux, "GET /api/v1/events", anyRole, a.events)
	}
	a.handle(mux, "GET /api/v1/openapi.json", nil, serveOpenAPI)
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "no such API route: "+r.Method+" "+r.URL.Path)
	})
	sub, _ := fs.Sub(consoleFS, "console")
	files := http.FileServerFS(sub)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' blob: data:; media-src 'self'; script-src 'self'; style-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Cache-Control", "no-cache")
		if r.URL.Path == "/field" { // the field-unit page is the same app
			r2 := *r
			u := *r.URL
			u.Path = "/"
			r2.URL = &u
			r = &r2
		}
		files.ServeHTTP(w, r)
	})
}

type apiError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]apiError{"error": {Code: code, Message: msg}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}

// AlertView is an alert as the API shows it: the wire fields plus what
// central knows about it.
type AlertView struct {
	wire.Alert
	Seq         int64     `json:"seq"`
	ReceivedAt  time.Time `json:"received_at"`
	SnapshotURL string    `json:"snapshot_url,omitempty"`
	ClipURL     string    `json:"clip_url,omitempty"`
	// CleanSnapshotURL is the unannotated copy of the snapshot, when the
	// agent sent one (it is stored as the snapshot of its own ULID).
	CleanSnapshotURL string `json:"clean_snapshot_url,omitempty"`
}

func view(rec store.AlertRecord) AlertView {
	v := AlertView{Alert: rec.Alert, Seq: rec.Seq, ReceivedAt: rec.ReceivedAt}
	if id := rec.Alert.Evidence.CleanSnapshotID; id != "" {
		v.CleanSnapshotURL = "/api/v1/alerts/" + url.PathEscape(id) + "/snapshot.jpg"
	}
	for _, e := range rec.Evidence {
		base := "/api/v1/alerts/" + url.PathEscape(rec.Alert.AlertID)
		switch e.Kind {
		case wire.EvidenceSnapshot:
			v.SnapshotURL = base + "/snapshot.jpg"
		case wire.EvidenceClip:
			v.ClipURL = base + "/clip.mp4"
		}
	}
	return v
}

func (a *API) listAlerts(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := store.AlertFilter{CameraID: q.Get("camera_id"), AgentID: q.Get("agent_id"), Type: q.Get("type"), Limit: 100}
	for key, val := range map[string]string{"camera_id": f.CameraID, "agent_id": f.AgentID} {
		if val != "" && !wire.ValidID(val) {
			writeError(w, http.StatusBadRequest, "bad_request", key+" is not a valid ID")
			return
		}
	}
	if f.Type != "" && !wire.ValidType(f.Type) {
		writeError(w, http.StatusBadRequest, "bad_request", "type is not a valid alert type")
		return
	}
	if s := q.Get("since"); s != "" {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			writeError(w, http.StatusBadRequest, "bad_request", "since must be an RFC 3339 time, e.g. 2026-11-21T20:00:00+08:00")
			return
		}
		f.Since = t
	}
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxPageSize {
			writeError(w, http.StatusBadRequest, "bad_request", "limit must be 1–"+strconv.Itoa(MaxPageSize))
			return
		}
		f.Limit = n
	}
	if s := q.Get("before"); s != "" {
		c, err := parseCursor(s)
		if err != nil {
			writeError(w, http.StatusBadRequest, "bad_request", "before must be the next cursor of a previous page")
			return
		}
		f.Before = &c
	}
	recs, err := a.r.ListAlerts(r.Context(), f)
	if err != nil {
		a.log.Error("list alerts", "err", err)
		writeError(w, http.StatusInternalServerError, "internal", "could not read alerts")
		return
	}
	out := struct {
		Alerts []AlertView `json:"alerts"`
		Next   string      `json:"next,omitempty"` // cursor for the next page (?before=…), when this page is full
	}{Alerts: make([]AlertView, 0, len(recs))}
	for _, rec := range recs {
		out.Alerts = append(out.Alerts, view(rec))
	}
	if len(recs) == f.Limit {
		last := recs[len(recs)-1]
		out.Next = formatCursor(store.Cursor{DetectedAt: last.Alert.DetectedAt, Seq: last.Seq})
	}
	writeJSON(w, http.StatusOK, out)
}

func (a *API) getAlert(w http.ResponseWriter, r *http.Request) {
	rec, err := a.r.GetAlert(r.Context(), r.PathValue("alert_id"))
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, "not_found", "no alert with that ID")
		return
	}
	if err != nil {
		a.log.Error("get alert", "err", err)
		writeError(w, http.StatusInternalServerError, "internal", "could not read the alert")
		return
	}
	writeJSON(w, http.StatusOK, view(rec))
}

func (a *API) evidence(kind wire.EvidenceKind, contentType string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ev, err := a.r.GetEvidence(r.Context(), r.PathValue("alert_id"), kind)
		if errors.Is(err, store.ErrNotFound) {
			writeError(w, http.StatusNotFound, "not_found", "no "+string(kind)+" for that alert")
			return
		}
		if err != nil {
			a.log.Error("get evidence", "err", err)
			writeError(w, http.StatusInternalServerError, "internal", "could not read the evidence")
			return
		}
		w.Header().Set("Content-Type", contentType)
		w.Header().Set("ETag", `"`+ev.SHA256+`"`)
		w.Header().Set("Cache-Control", "private, max-age=86400, immutable")
		w.Header().Set("X-Content-SHA256", ev.SHA256)
		a.extendDownload(w, len(ev.Data))
		http.ServeContent(w, r, "", ev.ReceivedAt, bytesReader(ev.Data))
	}
}

type agentView struct {
	AgentID       string              `json:"agent_id"`
	State         wire.AgentState     `json:"state"`
	Version       string              `json:"version,omitempty"`
	ConfigVersion string              `json:"config_version,omitempty"`
	Cameras       []wire.CameraStatus `json:"cameras"`
	StatusAt      time.Time           `json:"status_at"`
	LastSeen      time.Time           `json:"last_seen"`
}

func (a *API) listAgents(w http.ResponseWriter, r *http.Request) {
	recs, err := a.r.ListAgents(r.Context())
	if err != nil {
		a.log.Error("list agents", "err", err)
		writeError(w, http.StatusInternalServerError, "internal", "could not read agents")
		return
	}
	out := struct {
		Agents []agentView `json:"agents"`
	}{Agents: []agentView{}}
	for _, r := range recs {
		cams := r.Cameras
		if cams == nil {
			cams = []wire.CameraStatus{}
		}
		out.Agents = append(out.Agents, agentView{r.AgentID, r.State, r.Version, r.ConfigVersion, cams, r.StatusAt, r.LastSeen})
	}
	writeJSON(w, http.StatusOK, out)
}

// CommandTimeout is how long the API waits for an agent's reply unless the
// request says otherwise (?timeout=5s, at most MaxCommandTimeout).
const (
	CommandTimeout    = 15 * time.Second
	MaxCommandTimeout = time.Minute
)

func (a *API) command(w http.ResponseWriter, r *http.Request) {
	agentID := r.PathValue("agent_id")
	if !wire.ValidID(agentID) {
		writeError(w, http.StatusBadRequest, "bad_request", "invalid agent id")
		return
	}
	var body struct {
		Cmd      wire.CmdName `json:"cmd"`
		CameraID string       `json:"camera_id"`
	}
	if !decodeJSON(w, r, MaxJSONBytes, &body, `{"cmd": "reload|snapshot|verify", "camera_id": "…"}`) {
		return
	}
	timeoutAfter := CommandTimeout
	if s := r.URL.Query().Get("timeout"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 || d > MaxCommandTimeout {
			writeError(w, http.StatusBadRequest, "bad_request", "timeout must be a duration up to "+MaxCommandTimeout.String())
			return
		}
		timeoutAfter = d
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeoutAfter)
	defer cancel()
	// The answer may come later than the server's write timeout allows.
	extendWrite(w, timeoutAfter+a.lim().WriteTimeout)
	reply, err := a.cmd.Command(ctx, agentID, wire.Cmd{Cmd: body.Cmd, CameraID: body.CameraID})
	var timeout interface{ Timeout() bool }
	switch {
	case wire.ReasonOf(err) != "":
		writeError(w, http.StatusBadRequest, "bad_request", err.Error())
	case errors.As(err, &timeout) && timeout.Timeout():
		writeError(w, http.StatusGatewayTimeout, "agent_timeout", "agent "+agentID+" did not answer within "+timeoutAfter.String())
	case err != nil:
		a.log.Error("command", "agent_id", agentID, "err", err)
		writeError(w, http.StatusBadGateway, "broker", err.Error())
	default:
		writeJSON(w, http.StatusOK, reply)
	}
}

// A cursor is "<detected_at in Unix nanoseconds>.<seq>".
func formatCursor(c store.Cursor) string {
	return strconv.FormatInt(c.DetectedAt.UnixNano(), 10) + "." + strconv.FormatInt(c.Seq, 10)
}

func parseCursor(s string) (store.Cursor, error) {
	ns, seq, ok := strings.Cut(s, ".")
	if !ok {
		return store.Cursor{}, errors.New("malformed cursor")
	}
	n, err1 := strconv.ParseInt(ns, 10, 64)
	q, err2 := strconv.ParseInt(seq, 10, 64)
	if err1 != nil || err2 != nil || q < 1 {
		return store.Cursor{}, errors.New("malformed cursor")
	}
	return store.Cursor{DetectedAt: time.Unix(0, n).UTC(), Seq: q}, nil
}
