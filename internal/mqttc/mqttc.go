// Package mqttc builds paho MQTT client options from configuration, the same
// way for the agent and for central.
package mqttc

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/xueliang/xl/internal/config"
)

// TLS configures an encrypted broker connection.
type TLS struct {
	CAFile             string `mapstructure:"ca_file"`   // CA bundle that signed the broker's certificate
	CertFile           string `mapstructure:"cert_file"` // client certificate, optional
	KeyFile            string `mapstructure:"key_file"`
	ServerName         string `mapstructure:"server_name"`
	InsecureSkipVerify bool   `mapstructure:"insecure_skip_verify"`
}

// Config is a broker connection.
type Config struct {
	URL            string        `mapstructure:"url"` // tcp://host:1883, ssl://host:8883 or mqtts://…
	ClientID       string        `mapstructure:"client_id"`
	Username       string        `mapstructure:"username"`
	Password       string        `mapstructure:"password"`
	TLS            TLS           `mapstructure:"tls"`
	KeepAlive      time.Duration `mapstructure:"keep_alive"`
	ConnectTimeout time.Duration `mapstructure:"connect_timeout"`
}

// Default is a plain connection to a local broker.
func Default() Config {
	return Config{URL: "tcp://127.0.0.1:1883", KeepAlive: 30 * time.Second, ConnectTimeout: 10 * time.Second}
}

// Validate checks the connection settings; allowEmptyURL is for central,
// whose URL defaults to its embedded broker.
func (c Config) Validate(allowEmptyURL bool) []config.FieldError {
	var p config.Problems
	if c.URL != "" || !allowEmptyURL {
		p.URL("url", c.URL, "tcp", "mqtt", "ssl", "tls", "mqtts", "ws", "wss")
	}
	if len(c.ClientID) > 128 {
		p.Add("client_id", "longer than 128 bytes")
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		p.Add("tls.cert_file", "cert_file and key_file go together")
	}
	for key, f := range map[string]string{"tls.ca_file": c.TLS.CAFile, "tls.cert_file": c.TLS.CertFile, "tls.key_file": c.TLS.KeyFile} {
		if f != "" {
			if _, err := os.Stat(f); err != nil {
				p.Add(key, "%v", err)
			}
		}
	}
	if c.KeepAlive < time.Second {
		p.Add("keep_alive", "at least 1s")
	}
	if c.ConnectTimeout < time.Second {
		p.Add("connect_timeout", "at least 1s")
	}
	return p.List()
}

// TLSConfig returns the tls.Config for c, or nil when TLS is not configured.
func (c Config) TLSConfig() (*tls.Config, error) {
	t := c.TLS
	if t.CAFile == "" && t.CertFile == "" && !t.InsecureSkipVerify && t.ServerName == "" {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify} // #nosec G402 -- explicit opt-in (mqtt.tls.insecure_skip_verify), for tests
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("mqtt tls ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("mqtt tls ca_file %s: no PEM certificate in it", t.CAFile)
		}
		tc.RootCAs = pool
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("mqtt tls client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// Options returns paho options for c: auto-reconnect with backoff capped at
// 30 s, persistent session, and ordered delivery to handlers.
func (c Config) Options() (*mqtt.ClientOptions, error) {
	o := mqtt.NewClientOptions()
	o.AddBroker(c.URL)
	o.SetClientID(c.ClientID)
	o.SetUsername(c.Username)
	o.SetPassword(c.Password)
	o.SetKeepAlive(c.KeepAlive)
	o.SetConnectTimeout(c.ConnectTimeout)
	o.SetAutoReconnect(true)
	o.SetConnectRetry(true)
	o.SetConnectRetryInterval(time.Second)
	o.SetMaxReconnectInterval(30 * time.Second)
	o.SetCleanSession(false)
	o.SetOrderMatters(true)
	o.SetWriteTimeout(10 * time.Second)
	tc, err := c.TLSConfig()
	if err != nil {
		return nil, err
	}
	if tc != nil {
		o.SetTLSConfig(tc)
	}
	return o, nil
}

// Wait waits for a paho token with a timeout and returns its error.
func Wait(t mqtt.Token, timeout time.Duration) error {
	if !t.WaitTimeout(timeout) {
		return fmt.Errorf("mqtt: no answer within %s", timeout)
	}
	return t.Error()
}
