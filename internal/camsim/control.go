package camsim

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"
)

// ControlHandler is the HTTP API for injecting faults by hand (xl-camsim
// --control):
//
//	GET    /faults                                   the lasting faults: {"cam-01": "stall"}
//	POST   /cameras/{id}/fault?kind=stall[&for=30s]  inject (kind: drop, stall, stop, garbage, bad_rtp, bad_sdp)
//	DELETE /cameras/{id}/fault                       clear
//
// Answers are JSON; errors are {"error": "…"} with 400 or 404.
func (s *Server) ControlHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /faults", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, s.ActiveFaults())
	})
	mux.HandleFunc("POST /cameras/{id}/fault", func(w http.ResponseWriter, r *http.Request) {
		fault, err := ParseFault(r.URL.Query().Get("kind"))
		if err == nil && fault == FaultNone {
			err = errors.New("kind is required: " + strings.Join(FaultNames()[1:], ", "))
		}
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		var d time.Duration
		if v := r.URL.Query().Get("for"); v != "" {
			if d, err = time.ParseDuration(v); err != nil || d <= 0 {
				writeJSON(w, http.StatusBadRequest, map[string]string{"error": "for: want a positive duration such as 30s"})
				return
			}
		}
		s.setFaultHTTP(w, r.PathValue("id"), fault, d)
	})
	mux.HandleFunc("DELETE /cameras/{id}/fault", func(w http.ResponseWriter, r *http.Request) {
		s.setFaultHTTP(w, r.PathValue("id"), FaultNone, 0)
	})
	return mux
}

func (s *Server) setFaultHTTP(w http.ResponseWriter, id string, fault Fault, d time.Duration) {
	if _, ok := s.cams[id]; !ok {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no camera " + id})
		return
	}
	if err := s.SetFault(id, fault, d); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	out := map[string]any{"camera_id": id, "fault": string(fault)}
	if fault == FaultNone {
		out["fault"] = "none"
	}
	if d > 0 {
		out["for"] = d.String()
	}
	writeJSON(w, http.StatusOK, out)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
