// Package deploy holds no code: its tests check the deployment files beside
// it (Prometheus configuration and rules, Grafana dashboards, systemd units,
// compose files, Kubernetes manifests) with the real tools where the machine
// has them.
package deploy
