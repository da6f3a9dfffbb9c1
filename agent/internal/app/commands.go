package app

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/xueliang/xl/internal/wire"
)

// command executes a command from central.
//
//   - verify: reports the configuration version, the outbox backlog and each
//     camera's stream state.
//   - snapshot: publishes the last analysed frame of one camera (or of each)
//     as evidence under the command's ID, which must then be a ULID.
//   - reload: checks the configuration file on disk and reports its version;
//     in this release a changed file is applied by restarting the agent.
func (a *Agent) command(ctx context.Context, c *wire.Cmd) wire.CmdReply {
	r := wire.CmdReply{Result: map[string]any{}}
	switch c.Cmd {
	case wire.CmdVerify:
		msgs, bytes := a.ob.Stats()
		r.Result["config_version"] = a.cfg.Version
		r.Result["outbox_messages"] = msgs
		r.Result["outbox_bytes"] = bytes
		cams := map[string]any{}
		for _, cam := range a.cameras {
			st := cam.State()
			cams[st.CameraID] = map[string]any{"state": st.State, "fps": st.FPS}
		}
		r.Result["cameras"] = cams
	case wire.CmdSnapshot:
		n := 0
		for _, cam := range a.cameras {
			if c.CameraID != "" && cam.ID() != c.CameraID {
				continue
			}
			n++
			jpeg, err := cam.Snapshot()
			if err != nil {
				r.Error = fmt.Sprintf("camera %s: %v", cam.ID(), err)
				return r
			}
			topic := wire.EvidenceTopic(a.cfg.Agent.ID, c.CmdID, wire.EvidenceSnapshot)
			if _, err := wire.ParseAgentTopic(topic); err != nil {
				r.Error = "a snapshot command needs a ULID cmd_id: " + err.Error()
				return r
			}
			if err := a.pub.PublishRaw(topic, jpeg); err != nil {
				r.Error = fmt.Sprintf("camera %s: publish: %v", cam.ID(), err)
				return r
			}
			sum := sha256.Sum256(jpeg)
			r.Result[cam.ID()] = map[string]any{"sha256": hex.EncodeToString(sum[:]), "bytes": len(jpeg), "topic": topic}
			break // one camera per command: evidence is keyed by cmd_id
		}
		if n == 0 {
			r.Error = fmt.Sprintf("no camera %q on this agent", c.CameraID)
		}
	case wire.CmdReload:
		cfg, err := LoadConfig(a.path)
		if err != nil {
			r.Error = err.Error()
			return r
		}
		r.Result["config_version"] = cfg.Version
		r.Result["running_version"] = a.cfg.Version
		r.Result["applied"] = cfg.Version == a.cfg.Version
	default:
		r.Error = fmt.Sprintf("unknown command %q", c.Cmd)
	}
	return r
}
