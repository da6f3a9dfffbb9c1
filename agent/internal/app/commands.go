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
//   - reload: reads the configuration file again and applies each camera's
//     zones and scenarios (and site, grid code, position, time zone)
//     without dropping its stream; a file that changes anything else is
//     refused with the keys that need a restart (the same as SIGHUP).
func (a *Agent) command(ctx context.Context, c *wire.Cmd) wire.CmdReply {
	r := wire.CmdReply{Result: map[string]any{}}
	switch c.Cmd {
	case wire.CmdVerify:
		msgs, bytes := a.ob.Stats()
		r.Result["config_version"] = a.config().Version
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
			topic := wire.EvidenceTopic(a.config().Agent.ID, c.CmdID, wire.EvidenceSnapshot)
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
		res, err := a.Reload()
		r.Result["config_version"] = res.ConfigVersion
		r.Result["previous_version"] = res.PreviousVersion
		r.Result["changed"] = res.Changed
		r.Result["applied"] = err == nil
		if err != nil {
			r.Error = err.Error()
		}
	default:
		r.Error = fmt.Sprintf("unknown command %q", c.Cmd)
	}
	return r
}
