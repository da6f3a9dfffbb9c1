package web

import (
	"net/http"
	"net/url"
	"sort"
	"time"

	"github.com/xueliang/xl/internal/wire"
)

// CameraInfo is a camera as the routing configuration knows it.
type CameraInfo struct {
	ID     string    `json:"camera_id"`
	Grid   string    `json:"grid,omitempty"`
	NameZH string    `json:"name_zh,omitempty"`
	NameEN string    `json:"name_en,omitempty"`
	Geo    *wire.Geo `json:"geo,omitempty"`
	Zones  []string  `json:"zones,omitempty"`
}

// AgencyInfo is an agency as the routing configuration knows it.
type AgencyInfo struct {
	ID     string `json:"id"`
	NameZH string `json:"name_zh"`
	NameEN string `json:"name_en"`
	Level  string `json:"level,omitempty"`
}

// Places is what the console shows of the routing configuration.
type Places struct {
	Cameras  []CameraInfo
	Agencies []AgencyInfo
}

// WithPlaces adds the configured cameras and agencies.
func (a *API) WithPlaces(p Places) *API {
	a.places = p
	return a
}

// cameraView is a camera with its stream state as its agent last reported.
type cameraView struct {
	CameraInfo
	AgentID  string    `json:"agent_id,omitempty"`
	Online   bool      `json:"online"`       // its agent is online
	State    string    `json:"stream_state"` // as the agent reported it; "unknown" before any report
	FPS      float64   `json:"fps"`
	LastSeen time.Time `json:"last_seen,omitzero"`
}

func (a *API) listCameras(w http.ResponseWriter, r *http.Request) {
	agents, err := a.r.ListAgents(r.Context())
	if err != nil {
		a.storeError(w, "cameras", err)
		return
	}
	byID := map[string]*cameraView{}
	out := make([]*cameraView, 0, len(a.places.Cameras))
	for _, c := range a.places.Cameras {
		v := &cameraView{CameraInfo: c, State: "unknown"}
		byID[c.ID] = v
		out = append(out, v)
	}
	for _, ag := range agents {
		for _, cs := range ag.Cameras {
			v, ok := byID[cs.CameraID]
			if !ok { // reported by an agent, not in the routing configuration
				v = &cameraView{CameraInfo: CameraInfo{ID: cs.CameraID}}
				byID[cs.CameraID] = v
				out = append(out, v)
			}
			v.AgentID, v.Online, v.State, v.FPS, v.LastSeen = ag.AgentID, ag.State == wire.StateOnline, cs.State, cs.FPS, ag.LastSeen
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	writeJSON(w, http.StatusOK, map[string]any{"cameras": out})
}

func (a *API) listAgencies(w http.ResponseWriter, r *http.Request) {
	list := a.places.Agencies
	if list == nil {
		list = []AgencyInfo{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"agencies": list})
}

func orderSnapshotURL(orderID, alertSnapshot string) string {
	if alertSnapshot == "" {
		return ""
	}
	return "/api/v1/orders/" + url.PathEscape(orderID) + "/snapshot.jpg"
}
