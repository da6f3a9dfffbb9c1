package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Request body limits of the JSON write endpoints. Larger bodies get 413
// with code too_large.
const (
	MaxJSONBytes       = 4 << 10  // sign-in, users, tokens, agent commands
	MaxTransitionBytes = 16 << 10 // order transitions (notes and reasons)
)

// Limits are the operator's limits on uploads and on how long responses
// may take; zero fields take the defaults (DefaultLimits).
type Limits struct {
	// MaxPhotoBytes is the largest field photo (POST …/photos).
	MaxPhotoBytes int
	// UploadTimeout is how long a photo upload may take to arrive, in
	// place of the server's read timeout (field units are on slow links).
	UploadTimeout time.Duration
	// WriteTimeout is how long one write of an event stream, or the answer
	// after an agent's reply, may take before the client is dropped as
	// too slow.
	WriteTimeout time.Duration
}

// DefaultLimits are the limits of an API that sets none.
func DefaultLimits() Limits {
	return Limits{MaxPhotoBytes: MaxPhotoBytes, UploadTimeout: 2 * time.Minute, WriteTimeout: time.Minute}
}

// WithLimits sets the upload and streaming limits.
func (a *API) WithLimits(l Limits) *API {
	d := DefaultLimits()
	if l.MaxPhotoBytes <= 0 {
		l.MaxPhotoBytes = d.MaxPhotoBytes
	}
	if l.UploadTimeout <= 0 {
		l.UploadTimeout = d.UploadTimeout
	}
	if l.WriteTimeout <= 0 {
		l.WriteTimeout = d.WriteTimeout
	}
	a.limits = l
	return a
}

func (a *API) lim() Limits {
	if a.limits == (Limits{}) {
		return DefaultLimits()
	}
	return a.limits
}

// writeTooLarge answers 413 for a body over limit bytes.
func writeTooLarge(w http.ResponseWriter, limit int64) {
	w.Header().Set("Connection", "close")
	writeError(w, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("the request body is larger than %d bytes", limit))
}

// decodeJSON reads one JSON object of at most limit bytes into dst:
// unknown fields and anything after the object are errors. On failure it
// has answered (413 for a body too large, else 400 with usage and the
// reason) and returns false.
func decodeJSON(w http.ResponseWriter, r *http.Request, limit int64, dst any, usage string) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	dec.DisallowUnknownFields()
	err := dec.Decode(dst)
	if err == nil {
		// Only white space may follow the object.
		if _, terr := dec.Token(); terr != io.EOF {
			err = errors.New("trailing data after the JSON object")
			var mbe *http.MaxBytesError
			if errors.As(terr, &mbe) {
				err = terr
			}
		}
	}
	if err == nil {
		return true
	}
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		writeTooLarge(w, mbe.Limit)
		return false
	}
	if errors.Is(err, io.EOF) {
		err = errors.New("empty body")
	}
	writeError(w, http.StatusBadRequest, "bad_request", "body must be "+usage+": "+err.Error())
	return false
}

// MinDownloadRate is the slowest a client may fetch evidence and photos:
// such downloads get the write timeout plus one second per this many bytes,
// so that a 20 MB clip reaches a field unit on a poor link.
const MinDownloadRate = 64 << 10

// extendDownload gives a download of n bytes its time (see MinDownloadRate).
func (a *API) extendDownload(w http.ResponseWriter, n int) {
	extendWrite(w, a.lim().WriteTimeout+time.Duration(n/MinDownloadRate)*time.Second)
}

// extendWrite moves the connection's write deadline to d from now, for a
// handler that legitimately answers later than the server's WriteTimeout
// (a zero d removes the deadline). Errors are ignored: a writer that
// cannot take deadlines (httptest.ResponseRecorder) has none to extend.
func extendWrite(w http.ResponseWriter, d time.Duration) {
	var at time.Time
	if d > 0 {
		at = time.Now().Add(d)
	}
	_ = http.NewResponseController(w).SetWriteDeadline(at)
}
