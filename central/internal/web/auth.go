package web

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/xueliang/xl/central/internal/store"
)

// Users is what authentication asks of the store.
type Users interface {
	CreateUser(ctx context.Context, u store.User) error
	GetUser(ctx context.Context, username string) (store.User, error)
	ListUsers(ctx context.Context) ([]store.User, error)
	CreateSession(ctx context.Context, s store.Session) error
	GetSession(ctx context.Context, idHash string, now time.Time) (store.Session, error)
	DeleteSession(ctx context.Context, idHash string, now time.Time) error
	CreateToken(ctx context.Context, t store.APIToken) error
	TokenByHash(ctx context.Context, hash string) (store.APIToken, error)
}

// Session and login settings.
const (
	SessionCookie = "xl_session"
	CSRFHeader    = "X-CSRF-Token"
	SessionTTL    = 12 * time.Hour // one duty shift
	// LoginFailures failed logins per LoginWindow, per client address and
	// per username, lock further attempts out for the rest of the window.
	LoginFailures = 10
	LoginWindow   = 5 * time.Minute
)

// AuthOptions configures authentication.
type AuthOptions struct {
	// SecureCookies marks the session cookie Secure (served over TLS or
	// behind an https public URL).
	SecureCookies bool
}

// WithAuth turns authentication on: every /api/v1 route but the login
// needs a session or an API token.
func (a *API) WithAuth(u Users, opt AuthOptions) *API {
	a.users, a.authOpt = u, opt
	a.limiter = newLimiter(LoginFailures, LoginWindow)
	return a
}

// Principal is who made a request.
type Principal struct {
	User  store.User
	Token string // the API token's name, when the request carried one
	csrf  string // the session's CSRF token; empty for tokens
}

// Actor names the principal in the audit log.
func (p Principal) Actor() string {
	if p.User.Role == store.RoleAgency {
		return "agency:" + p.User.AgencyID + "/" + p.User.Username
	}
	return "user:" + p.User.Username
}

type principalKey struct{}

func principalOf(r *http.Request) (Principal, bool) {
	p, ok := r.Context().Value(principalKey{}).(Principal)
	return p, ok
}

// Role sets of the routes.
var (
	anyRole     = []string{store.RoleOfficer, store.RoleAgency, store.RoleOps, store.RoleAdmin}
	staffRoles  = []string{store.RoleOfficer, store.RoleOps, store.RoleAdmin}
	officerOnly = []string{store.RoleOfficer, store.RoleAdmin}
	opsRoles    = []string{store.RoleOps, store.RoleAdmin}
	adminOnly   = []string{store.RoleAdmin}
)

// handle registers h for pattern, reachable by the roles (nil: no
// authentication, e.g. the login), and records the route for the OpenAPI
// check.
func (a *API) handle(mux *http.ServeMux, pattern string, roles []string, h http.HandlerFunc) {
	a.routes = append(a.routes, pattern)
	if roles == nil || a.users == nil {
		mux.HandleFunc(pattern, h)
		return
	}
	mux.HandleFunc(pattern, a.authenticated(roles, h))
}

// Routes lists the patterns registered under /api/v1.
func (a *API) Routes() []string { return append([]string(nil), a.routes...) }

func hashSecret(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func randomToken(prefix string) string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return prefix + base64.RawURLEncoding.EncodeToString(b)
}

// authenticate finds the principal of r: an API token (Authorization:
// Bearer) or a session cookie.
func (a *API) authenticate(r *http.Request) (Principal, bool, error) {
	ctx := r.Context()
	if h := r.Header.Get("Authorization"); h != "" {
		tok, ok := strings.CutPrefix(h, "Bearer ")
		if !ok || tok == "" {
			return Principal{}, false, nil
		}
		t, err := a.users.TokenByHash(ctx, hashSecret(tok))
		if errors.Is(err, store.ErrNotFound) {
			return Principal{}, false, nil
		}
		if err != nil {
			return Principal{}, false, err
		}
		u, err := a.users.GetUser(ctx, t.Username)
		if errors.Is(err, store.ErrNotFound) || u.Disabled {
			return Principal{}, false, nil
		}
		return Principal{User: u, Token: t.Name}, err == nil, err
	}
	c, err := r.Cookie(SessionCookie)
	if err != nil || c.Value == "" {
		return Principal{}, false, nil
	}
	se, err := a.users.GetSession(ctx, hashSecret(c.Value), time.Now())
	if errors.Is(err, store.ErrNotFound) {
		return Principal{}, false, nil
	}
	if err != nil {
		return Principal{}, false, err
	}
	u, err := a.users.GetUser(ctx, se.Username)
	if errors.Is(err, store.ErrNotFound) || u.Disabled {
		return Principal{}, false, nil
	}
	return Principal{User: u, csrf: se.CSRF}, err == nil, err
}

// authenticated wraps h: 401 without a valid session or token, 403 when a
// session's state-changing request lacks its CSRF token or comes from
// another origin, 403 for a role not in roles.
func (a *API) authenticated(roles []string, h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		p, ok, err := a.authenticate(r)
		if err != nil {
			a.log.Error("authenticate", "err", err)
			writeError(w, http.StatusInternalServerError, "internal", "could not check the credentials")
			return
		}
		if !ok {
			writeError(w, http.StatusUnauthorized, "unauthenticated", "sign in, or send an API token (Authorization: Bearer …)")
			return
		}
		if p.Token == "" && !safeMethod(r.Method) {
			if !sameOrigin(r) {
				writeError(w, http.StatusForbidden, "csrf", "cross-origin request refused")
				return
			}
			if subtle.ConstantTimeCompare([]byte(r.Header.Get(CSRFHeader)), []byte(p.csrf)) != 1 {
				writeError(w, http.StatusForbidden, "csrf", "missing or wrong "+CSRFHeader+" header")
				return
			}
		}
		allowed := false
		for _, role := range roles {
			allowed = allowed || p.User.Role == role
		}
		if !allowed {
			writeError(w, http.StatusForbidden, "forbidden", "role "+p.User.Role+" may not do this")
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
	}
}

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// sameOrigin accepts requests whose Origin (or, without one, Referer) is
// this host; browsers send Origin on every cross-site POST.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		o = r.Header.Get("Referer")
	}
	if o == "" {
		return true // not a browser's cross-site request; the CSRF token still applies
	}
	u, err := url.Parse(o)
	return err == nil && u.Host == r.Host
}

// maxLimiterKeys bounds the sign-in limiter's memory: keys are at most
// "user:" and a 64-byte username, or "ip:" and an address.
const maxLimiterKeys = 100_000

// limiter counts failed logins per key in a fixed window.
type limiter struct {
	mu     sync.Mutex
	max    int
	window time.Duration
	fails  map[string]*window
}

type window struct {
	start time.Time
	n     int
}

func newLimiter(max int, w time.Duration) *limiter {
	return &limiter{max: max, window: w, fails: make(map[string]*window)}
}

// blocked reports whether key is locked out at now and for how long.
func (l *limiter) blocked(key string, now time.Time) (time.Duration, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	w, ok := l.fails[key]
	if !ok || now.Sub(w.start) >= l.window {
		return 0, false
	}
	return l.window - now.Sub(w.start), w.n >= l.max
}

func (l *limiter) fail(key string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.fails) >= maxLimiterKeys { // bounded: drop expired windows, else forget everything rather than grow
		for k, w := range l.fails {
			if now.Sub(w.start) >= l.window {
				delete(l.fails, k)
			}
		}
		if len(l.fails) >= maxLimiterKeys {
			clear(l.fails)
		}
	}
	w, ok := l.fails[key]
	if !ok || now.Sub(w.start) >= l.window {
		w = &window{start: now}
		l.fails[key] = w
	}
	w.n++
}

func (l *limiter) reset(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.fails, key)
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// bcryptCost is the cost of new password hashes (tests lower it).
var bcryptCost = bcrypt.DefaultCost

// dummyHash makes a login of an unknown user cost as much as a known one.
var dummyHash, _ = bcrypt.GenerateFromPassword([]byte("not a password"), bcrypt.DefaultCost)

type sessionView struct {
	User      store.User `json:"user"`
	CSRFToken string     `json:"csrf_token,omitempty"`
}

func (a *API) login(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Username string `json:"username"`
		Password string `json:"password"`
	}
	const usage = `{"username": "…", "password": "…"}`
	if !decodeJSON(w, r, MaxJSONBytes, &body, usage) {
		return
	}
	if body.Username == "" {
		writeError(w, http.StatusBadRequest, "bad_request", "body must be "+usage+": username is empty")
		return
	}
	if !sameOrigin(r) {
		writeError(w, http.StatusForbidden, "csrf", "cross-origin request refused")
		return
	}
	now := time.Now()
	ipKey, userKey := "ip:"+clientIP(r), "user:"+body.Username
	if !validUsername(body.Username) {
		// No such user can exist: count the address only, so that junk
		// names neither fill the limiter nor cost a bcrypt comparison.
		if wait, blocked := a.limiter.blocked(ipKey, now); blocked {
			w.Header().Set("Retry-After", strconv.Itoa(int(wait.Seconds())+1))
			writeError(w, http.StatusTooManyRequests, "rate_limited", "too many failed sign-ins; try again later")
			return
		}
		a.limiter.fail(ipKey, now)
		writeError(w, http.StatusUnauthorized, "bad_credentials", "wrong username or password")
		return
	}
	for _, k := range []string{ipKey, userKey} {
		if wait, blocked := a.limiter.blocked(k, now); blocked {
			w.Header().Set("Retry-After", strconv.Itoa(int(wait.Seconds())+1))
			writeError(w, http.StatusTooManyRequests, "rate_limited", "too many failed sign-ins; try again later")
			return
		}
	}
	u, err := a.users.GetUser(r.Context(), body.Username)
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		a.storeError(w, "login", err)
		return
	}
	hash := []byte(u.PasswordHash)
	if err != nil || u.PasswordHash == "" {
		hash = dummyHash
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(body.Password)) != nil || err != nil || u.PasswordHash == "" || u.Disabled {
		a.limiter.fail(ipKey, now)
		a.limiter.fail(userKey, now)
		a.log.Warn("sign-in failed", "username", body.Username, "remote", clientIP(r))
		writeError(w, http.StatusUnauthorized, "bad_credentials", "wrong username or password")
		return
	}
	a.limiter.reset(userKey)
	id := randomToken("")
	se := store.Session{IDHash: hashSecret(id), Username: u.Username, CSRF: randomToken(""), CreatedAt: now, ExpiresAt: now.Add(SessionTTL)}
	if err := a.users.CreateSession(r.Context(), se); err != nil {
		a.storeError(w, "login", err)
		return
	}
	// Secure whenever the console is reached over https (http.public_url) or TLS; a plain-http LAN
	// install cannot use Secure cookies at all.
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: id, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode, // #nosec G124 -- Secure as above
		Secure: a.authOpt.SecureCookies || r.TLS != nil, Expires: se.ExpiresAt})
	a.log.Info("signed in", "username", u.Username, "role", u.Role)
	writeJSON(w, http.StatusOK, sessionView{User: u, CSRFToken: se.CSRF})
}

func (a *API) getSession(w http.ResponseWriter, r *http.Request) {
	p, _ := principalOf(r)
	writeJSON(w, http.StatusOK, sessionView{User: p.User, CSRFToken: p.csrf})
}

func (a *API) logout(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(SessionCookie); err == nil {
		if err := a.users.DeleteSession(r.Context(), hashSecret(c.Value), time.Now()); err != nil {
			a.storeError(w, "logout", err)
			return
		}
	}
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: "", Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode, MaxAge: -1, // #nosec G124 -- Secure as at sign-in
		Secure: a.authOpt.SecureCookies || r.TLS != nil})
	w.WriteHeader(http.StatusNoContent)
}

// HashPassword is the bcrypt hash of a console password.
func HashPassword(pw string) (string, error) {
	if len(pw) < 10 {
		return "", errors.New("a password needs at least 10 characters")
	}
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcryptCost)
	return string(h), err
}

// ErrInvalidUser is returned by NewUser for a user that cannot be created.
var ErrInvalidUser = errors.New("invalid user")

// NewUser validates u, hashes password (empty: no password sign-in, e.g.
// a system that uses tokens only) and stores the user.
func NewUser(ctx context.Context, us Users, u store.User, password string) (store.User, error) {
	if !validUsername(u.Username) {
		return u, fmt.Errorf("%w: username: 1–64 of letters, digits, '.', '_', '-', '@'", ErrInvalidUser)
	}
	if !store.ValidRole(u.Role) {
		return u, fmt.Errorf("%w: role must be officer, agency, ops or admin", ErrInvalidUser)
	}
	if (u.Role == store.RoleAgency) != (u.AgencyID != "") {
		return u, fmt.Errorf("%w: an agency user, and only one, names its agency", ErrInvalidUser)
	}
	if password != "" {
		h, err := HashPassword(password)
		if err != nil {
			return u, fmt.Errorf("%w: %w", ErrInvalidUser, err)
		}
		u.PasswordHash = h
	}
	if u.CreatedAt.IsZero() {
		u.CreatedAt = time.Now().UTC()
	}
	return u, us.CreateUser(ctx, u)
}

// NewToken creates an API token acting as username and returns it; only
// its hash is stored, so this is the only time it is seen.
func NewToken(ctx context.Context, us Users, username, name string) (string, store.APIToken, error) {
	if _, err := us.GetUser(ctx, username); err != nil {
		return "", store.APIToken{}, err
	}
	secret := randomToken("xlt_")
	t := store.APIToken{ID: randomToken("")[:16], Name: name, Username: username, Hash: hashSecret(secret), CreatedAt: time.Now().UTC()}
	return secret, t, us.CreateToken(ctx, t)
}

func validUsername(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for _, c := range s {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("._-@", c)
		if !ok {
			return false
		}
	}
	return true
}

func (a *API) listUsers(w http.ResponseWriter, r *http.Request) {
	list, err := a.users.ListUsers(r.Context())
	if err != nil {
		a.storeError(w, "users", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"users": list})
}

func (a *API) createUser(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Username    string `json:"username"`
		Role        string `json:"role"`
		AgencyID    string `json:"agency_id"`
		DisplayName string `json:"display_name"`
		Password    string `json:"password"`
	}
	if !decodeJSON(w, r, MaxJSONBytes, &body, "{username, role, agency_id, display_name, password}") {
		return
	}
	u, err := NewUser(r.Context(), a.users, store.User{Username: body.Username, Role: body.Role, AgencyID: body.AgencyID, DisplayName: body.DisplayName}, body.Password)
	switch {
	case errors.Is(err, store.ErrConflict):
		writeError(w, http.StatusConflict, "conflict", "user "+body.Username+" exists")
	case errors.Is(err, ErrInvalidUser):
		writeError(w, http.StatusUnprocessableEntity, "invalid_user", err.Error())
	case err != nil:
		a.storeError(w, "create user", err)
	default:
		writeJSON(w, http.StatusCreated, map[string]any{"user": u})
	}
}

func (a *API) createToken(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Name string `json:"name"`
	}
	if !decodeJSON(w, r, MaxJSONBytes, &body, `{"name": "…"}`) {
		return
	}
	if body.Name == "" || len(body.Name) > 128 {
		writeError(w, http.StatusBadRequest, "bad_request", `body must be {"name": "…"}: a name of 1–128 bytes`)
		return
	}
	secret, t, err := NewToken(r.Context(), a.users, r.PathValue("username"), body.Name)
	if err != nil {
		a.storeError(w, "create token", err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{"token": secret, "id": t.ID, "name": t.Name, "username": t.Username})
}
