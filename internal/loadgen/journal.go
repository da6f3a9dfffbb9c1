package loadgen

import (
	"bufio"
	"fmt"
	"os"
)

// journal records every alert sent and what became of it, one line each,
// for exact comparisons with what central stored:
//
//	S <alert_id> <agent_id> <camera_id>   published
//	A <alert_id>                          acknowledged by the broker (PUBACK)
//	U <alert_id> <reason>                 not acknowledged within the ack timeout
//
// One goroutine writes; the queue blocks rather than drop a line.
type journal struct {
	f   *os.File
	w   *bufio.Writer
	q   chan string
	err error
}

func openJournal(path string) (*journal, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("--journal: %w", err)
	}
	return &journal{f: f, w: bufio.NewWriterSize(f, 1<<16), q: make(chan string, 1<<14)}, nil
}

func (j *journal) sent(alertID, agentID, cameraID string) {
	j.q <- "S " + alertID + " " + agentID + " " + cameraID + "\n"
}
func (j *journal) acked(alertID string) { j.q <- "A " + alertID + "\n" }
func (j *journal) unacked(alertID, reason string) {
	j.q <- "U " + alertID + " " + fmt.Sprintf("%q", reason) + "\n"
}

// run writes lines until close; it flushes whenever the queue runs empty,
// so the file is current within moments.
func (j *journal) run() {
	for line := range j.q {
		if _, err := j.w.WriteString(line); err != nil && j.err == nil {
			j.err = err
		}
		if len(j.q) == 0 {
			if err := j.w.Flush(); err != nil && j.err == nil {
				j.err = err
			}
		}
	}
	if err := j.w.Flush(); err != nil && j.err == nil {
		j.err = err
	}
	if err := j.f.Close(); err != nil && j.err == nil {
		j.err = err
	}
}

// close ends run after the lines queued so far.
func (j *journal) close() { close(j.q) }

// closeFile closes the file of a journal whose run never started.
func (j *journal) closeFile() error { return j.f.Close() }
