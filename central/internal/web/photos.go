package web

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/xueliang/xl/central/internal/store"
	"github.com/xueliang/xl/internal/wire"
)

// Photos stores the photos field units attach to orders.
type Photos interface {
	AddOrderPhoto(ctx context.Context, p store.OrderPhoto) (int64, error)
	OrderPhotos(ctx context.Context, orderID string) ([]store.OrderPhoto, error)
	OrderPhoto(ctx context.Context, orderID string, id int64) (store.OrderPhoto, error)
}

// MaxPhotoBytes is the default largest photo a field unit may upload
// (Limits.MaxPhotoBytes, http.max_photo_bytes).
const MaxPhotoBytes = 10 << 20

// WithPhotos adds the order photo routes and the order's snapshot route.
func (a *API) WithPhotos(p Photos) *API {
	a.photos = p
	return a
}

func (a *API) listPhotos(w http.ResponseWriter, r *http.Request) {
	rec, ok := a.visibleOrder(w, r)
	if !ok {
		return
	}
	list, err := a.photos.OrderPhotos(r.Context(), rec.Order.ID)
	if err != nil {
		a.storeError(w, "photos", err)
		return
	}
	type photoView struct {
		store.OrderPhoto
		URL string `json:"url"`
	}
	out := make([]photoView, 0, len(list))
	for _, p := range list {
		out = append(out, photoView{p, "/api/v1/orders/" + rec.Order.ID + "/photos/" + strconv.FormatInt(p.ID, 10)})
	}
	writeJSON(w, http.StatusOK, map[string]any{"photos": out})
}

// addPhoto takes a multipart form with a "photo" file (JPEG, PNG or WebP)
// and an optional "note".
func (a *API) addPhoto(w http.ResponseWriter, r *http.Request) {
	rec, ok := a.visibleOrder(w, r)
	if !ok {
		return
	}
	lim := a.lim()
	// Field units upload over slow links: the upload gets its own time.
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(lim.UploadTimeout))
	maxBody := int64(lim.MaxPhotoBytes) + 64<<10 // the photo, the note and the form's framing
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	// The whole form is kept in memory (it is bounded by maxBody): nothing
	// goes to temporary files.
	if err := r.ParseMultipartForm(maxBody); err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeTooLarge(w, mbe.Limit)
			return
		}
	}
	if r.MultipartForm != nil {
		defer func() { _ = r.MultipartForm.RemoveAll() }()
	}
	f, _, err := r.FormFile("photo")
	if err != nil {
		writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("a multipart form with a \"photo\" file of at most %d bytes is needed", lim.MaxPhotoBytes))
		return
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, int64(lim.MaxPhotoBytes)+1))
	if err == nil && len(data) > lim.MaxPhotoBytes {
		writeTooLarge(w, int64(lim.MaxPhotoBytes))
		return
	}
	if err != nil || len(data) == 0 {
		writeError(w, http.StatusBadRequest, "bad_request", fmt.Sprintf("the photo must be 1 to %d bytes", lim.MaxPhotoBytes))
		return
	}
	ct := http.DetectContentType(data)
	switch ct {
	case "image/jpeg", "image/png", "image/webp":
	default:
		writeError(w, http.StatusUnsupportedMediaType, "unsupported_media_type", "a photo must be JPEG, PNG or WebP, not "+ct)
		return
	}
	sum := sha256.Sum256(data)
	by := ""
	if p, ok := principalOf(r); ok {
		by = p.Actor()
	}
	note := r.FormValue("note")
	if len(note) > 2000 {
		note = note[:2000]
	}
	ph := store.OrderPhoto{OrderID: rec.Order.ID, ContentType: ct, SHA256: hex.EncodeToString(sum[:]), Size: len(data),
		UploadedBy: by, Note: note, CreatedAt: time.Now().UTC(), Data: data}
	id, err := a.photos.AddOrderPhoto(r.Context(), ph)
	if err != nil {
		a.storeError(w, "add photo", err)
		return
	}
	ph.ID = id
	writeJSON(w, http.StatusCreated, map[string]any{"photo": ph, "url": "/api/v1/orders/" + rec.Order.ID + "/photos/" + strconv.FormatInt(id, 10)})
}

func (a *API) getPhoto(w http.ResponseWriter, r *http.Request) {
	rec, ok := a.visibleOrder(w, r)
	if !ok {
		return
	}
	id, err := strconv.ParseInt(r.PathValue("photo_id"), 10, 64)
	if err != nil {
		writeError(w, http.StatusNotFound, "not_found", "no such photo")
		return
	}
	p, err := a.photos.OrderPhoto(r.Context(), rec.Order.ID, id)
	if err != nil {
		a.storeError(w, "photo", err)
		return
	}
	w.Header().Set("Content-Type", p.ContentType)
	w.Header().Set("ETag", `"`+p.SHA256+`"`)
	w.Header().Set("Cache-Control", "private, max-age=86400, immutable")
	a.extendDownload(w, len(p.Data))
	http.ServeContent(w, r, "", p.CreatedAt, bytesReader(p.Data))
}

// orderSnapshot serves the snapshot of the first alert of the order's
// incident, to whoever may see the order (a field unit too).
func (a *API) orderSnapshot(w http.ResponseWriter, r *http.Request) {
	rec, ok := a.visibleOrder(w, r)
	if !ok {
		return
	}
	alerts, err := a.inc.IncidentAlerts(r.Context(), rec.Order.IncidentID, 1)
	if err != nil || len(alerts) == 0 {
		writeError(w, http.StatusNotFound, "not_found", "no snapshot for that order")
		return
	}
	ev, err := a.r.GetEvidence(r.Context(), alerts[0].Alert.AlertID, wire.EvidenceSnapshot)
	if err != nil {
		a.storeError(w, "snapshot", err)
		return
	}
	w.Header().Set("Content-Type", "image/jpeg")
	w.Header().Set("ETag", `"`+ev.SHA256+`"`)
	w.Header().Set("Cache-Control", "private, max-age=86400, immutable")
	a.extendDownload(w, len(ev.Data))
	http.ServeContent(w, r, "", ev.ReceivedAt, bytesReader(ev.Data))
}
