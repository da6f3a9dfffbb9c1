package broker

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
	"golang.org/x/crypto/bcrypt"

	"github.com/xueliang/xl/internal/wire"
)

// Roles of broker users.
const (
	RoleAgent   = "agent"   // may publish only under xl/v1/agents/{its username}/ and read only its cmd topic
	RoleCentral = "central" // another central replica or tool: everything under xl/v1/
	RoleAgency  = "agency"  // an agency's gateway or field units: read its orders, send its acks
)

// User is one broker account. Agents log in with their agent ID as the
// username.
type User struct {
	Username     string `mapstructure:"username"`
	PasswordHash string `mapstructure:"password_hash"` // bcrypt; make one with `xl-central passwd`
	Role         string `mapstructure:"role"`
}

// InternalUser is the account central's own intake uses on the embedded
// broker; its password is random for each run and never configured.
const InternalUser = "xl-central-internal"

// auth authenticates clients and enforces topic ACLs.
type auth struct {
	mqtt.HookBase
	users          map[string]User
	allowAnonymous bool
	internalPass   []byte

	mu   sync.Mutex
	good map[string]bool // sha256(username, password) of verified logins: bcrypt once per credential

	authFailures *prometheus.CounterVec
	aclDenied    *prometheus.CounterVec
}

func newAuth(users []User, allowAnonymous bool, reg prometheus.Registerer) (*auth, error) {
	a := &auth{users: map[string]User{}, allowAnonymous: allowAnonymous, good: map[string]bool{}}
	for _, u := range users {
		a.users[u.Username] = u
	}
	pw := make([]byte, 32)
	if _, err := rand.Read(pw); err != nil {
		return nil, err
	}
	a.internalPass = []byte(hex.EncodeToString(pw))
	f := promauto.With(reg)
	a.authFailures = f.NewCounterVec(prometheus.CounterOpts{Name: "xl_central_broker_auth_failures_total",
		Help: "Connections refused by the embedded broker, by reason (unknown_user, bad_password, anonymous)."}, []string{"reason"})
	a.aclDenied = f.NewCounterVec(prometheus.CounterOpts{Name: "xl_central_broker_acl_denied_total",
		Help: "Publishes and subscriptions refused by topic ACL, by user and action."}, []string{"username", "action"})
	return a, nil
}

func (a *auth) ID() string { return "xl-auth" }

func (a *auth) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck
}

func (a *auth) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	user := string(pk.Connect.Username)
	pass := pk.Connect.Password
	if user == "" {
		if !a.allowAnonymous {
			a.authFailures.WithLabelValues("anonymous").Inc()
			return false
		}
		return true
	}
	if user == InternalUser {
		ok := subtle.ConstantTimeCompare(pass, a.internalPass) == 1
		if !ok {
			a.authFailures.WithLabelValues("bad_password").Inc()
		}
		return ok
	}
	u, ok := a.users[user]
	if !ok {
		a.authFailures.WithLabelValues("unknown_user").Inc()
		return false
	}
	sum := sha256.Sum256(append(append([]byte(user), 0), pass...))
	key := string(sum[:])
	a.mu.Lock()
	cached := a.good[key]
	a.mu.Unlock()
	if cached {
		return true
	}
	if bcrypt.CompareHashAndPassword([]byte(u.PasswordHash), pass) != nil {
		a.authFailures.WithLabelValues("bad_password").Inc()
		return false
	}
	a.mu.Lock()
	if len(a.good) > 100000 {
		a.good = map[string]bool{}
	}
	a.good[key] = true
	a.mu.Unlock()
	return true
}

func (a *auth) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	user := string(cl.Properties.Username)
	if user == "" { // anonymous, only when allowed: development mode
		return a.allowAnonymous
	}
	if user == InternalUser {
		return true
	}
	u, ok := a.users[user]
	if !ok {
		return false
	}
	if u.Role == RoleCentral {
		return strings.HasPrefix(topic, wire.Root+"/") || strings.HasPrefix(topic, "$share/")
	}
	if u.Role == RoleAgency && AgencyMay(user, topic, write) || u.Role == RoleAgent && AgentMay(user, topic, write) {
		return true
	}
	action := "subscribe"
	if write {
		action = "publish"
	}
	a.aclDenied.WithLabelValues(user, action).Inc()
	a.Log.Warn("topic refused by ACL", "username", user, "topic", topic, "action", action)
	return false
}

// AgentMay reports whether the agent agentID may publish (write) or
// subscribe to topic: publish only under its own xl/v1/agents/{id}/
// (status, alerts, evidence, replies), subscribe only to its own cmd topic.
func AgentMay(agentID, topic string, write bool) bool {
	if !write {
		return topic == wire.CmdTopic(agentID)
	}
	t, err := wire.ParseAgentTopic(topic)
	if err != nil || t.AgentID != agentID {
		return false
	}
	return t.Kind == wire.KindStatus || t.Kind == wire.KindAlerts || t.Kind == wire.KindEvidence || t.Kind == wire.KindReplies
}

// AgencyMay reports whether the agency agencyID may publish (write) or
// subscribe to topic: subscribe to its own orders, publish its own acks.
func AgencyMay(agencyID, topic string, write bool) bool {
	if write {
		return topic == wire.AckTopic(agencyID)
	}
	return topic == wire.OrdersTopic(agencyID)
}

// HashPassword returns the bcrypt hash to put in broker.users.
func HashPassword(pw []byte) (string, error) {
	if len(bytes.TrimSpace(pw)) < 12 {
		return "", fmt.Errorf("password must have at least 12 characters")
	}
	h, err := bcrypt.GenerateFromPassword(pw, bcrypt.DefaultCost)
	return string(h), err
}
