package detect

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"time"

	"gocv.io/x/gocv"
)

// ChildCommand makes the command that runs ServeModelCheck in a fresh
// process; CheckModel sets its standard input, output and error. While it is
// nil, CheckModel (and NewYOLOX for a model the manifest does not vouch for)
// fails with ErrNoChildCommand.
//
// The agent sets it once at start-up, before any detector is made, to
// re-execute its own binary with a hidden subcommand:
//
//	detect.ChildCommand = detect.SelfCommand([]string{"__check-model"})
//
// and that subcommand (hidden from help) does nothing but
//
//	if err := detect.ServeModelCheck(os.Stdin, os.Stdout); err != nil {
//		os.Exit(1)
//	}
//
// Tests do the same with the test binary: TestMain serves the check when an
// environment variable is set, and sets ChildCommand to
// SelfCommand([]string{"-test.run=^$"}, "THAT_VARIABLE=1").
var ChildCommand func(ctx context.Context) (*exec.Cmd, error)

// SelfCommand returns a ChildCommand that re-executes the running binary
// with args and extra environment variables ("KEY=value").
func SelfCommand(args []string, env ...string) func(ctx context.Context) (*exec.Cmd, error) {
	return func(ctx context.Context) (*exec.Cmd, error) {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("finding the running binary: %w", err)
		}
		cmd := exec.CommandContext(ctx, exe, args...)
		cmd.Env = append(os.Environ(), env...)
		return cmd, nil
	}
}

var (
	// ErrNoChildCommand: CheckModel cannot start a child process.
	ErrNoChildCommand = errors.New("no child process command is set (detect.ChildCommand)")
	// ErrChildCrashed: the model crashed the child process (OpenCV aborted).
	ErrChildCrashed = errors.New("the model crashed the checking process")
)

// CheckTimeout bounds one child-process model check.
const CheckTimeout = 2 * time.Minute

// CheckModel checks a model file that is not known to be good without risking
// this process: the file's ONNX structure and declared shapes are read in Go,
// then a child process (ChildCommand) loads it with OpenCV and runs one
// forward pass on a zero blob of the input size, and the output shape it
// reports must be want.OutputShape. An OpenCV abort in the child is returned
// as an error wrapping ErrChildCrashed, with OpenCV's message.
func CheckModel(path string, want ModelSpec) error {
	return CheckModelContext(context.Background(), path, want)
}

// CheckModelContext is CheckModel with a context.
func CheckModelContext(ctx context.Context, path string, want ModelSpec) error {
	if err := want.validate(); err != nil {
		return fmt.Errorf("check model %s: %w", path, err)
	}
	data, d, err := readModel(path, nil)
	if err != nil {
		return fmt.Errorf("check model: %w", err)
	}
	return checkModelData(ctx, data, d, want)
}

func checkModelData(ctx context.Context, data []byte, d FileDigest, want ModelSpec) error {
	info, err := inspectONNX(data)
	if err != nil {
		return fmt.Errorf("check model %s: %w", d.Path, err)
	}
	if err := info.checkDeclared(want); err != nil {
		return fmt.Errorf("check model %s: %w", d.Path, err)
	}
	res, err := runChildCheck(ctx, d.Path, d.SHA256, want)
	if err != nil {
		return fmt.Errorf("check model %s: %w", d.Path, err)
	}
	if !slices.Equal(res.OutputShape, want.OutputShape) {
		return fmt.Errorf("check model %s: output shape is %s, want %s", d.Path, dimsString(res.OutputShape), dimsString(want.OutputShape))
	}
	return nil
}

// checkRequest is what the parent sends the child on its standard input.
type checkRequest struct {
	Path   string    `json:"path"`
	SHA256 string    `json:"sha256"`
	Spec   ModelSpec `json:"spec"`
}

// checkResult is the child's answer, one JSON line on its standard output.
type checkResult struct {
	OK          bool    `json:"ok"`
	Error       string  `json:"error,omitempty"`
	OutputShape []int   `json:"output_shape,omitempty"`
	Layers      int     `json:"layers,omitempty"`
	LoadMS      float64 `json:"load_ms,omitempty"`
	ForwardMS   float64 `json:"forward_ms,omitempty"`
}

const childOutputLimit = 64 << 10

// runChildCheck runs ServeModelCheck in a child process and interprets how it
// ended.
func runChildCheck(ctx context.Context, path, sha string, spec ModelSpec) (*checkResult, error) {
	if ChildCommand == nil {
		return nil, ErrNoChildCommand
	}
	ctx, cancel := context.WithTimeout(ctx, CheckTimeout)
	defer cancel()
	cmd, err := ChildCommand(ctx)
	if err != nil {
		return nil, fmt.Errorf("child process: %w", err)
	}
	req, err := json.Marshal(checkRequest{Path: path, SHA256: sha, Spec: spec})
	if err != nil {
		return nil, err
	}
	stdout, stderr := &tailBuffer{max: childOutputLimit}, &tailBuffer{max: childOutputLimit}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(req), stdout, stderr
	cmd.WaitDelay = 5 * time.Second
	runErr := cmd.Run()
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return nil, fmt.Errorf("child process did not finish in time (at most %s): %w", CheckTimeout, ctx.Err())
	}
	if ctx.Err() != nil {
		return nil, fmt.Errorf("child process: %w", ctx.Err())
	}
	res, parseErr := lastResult(stdout.Bytes())
	var exitErr *exec.ExitError
	switch {
	case errors.As(runErr, &exitErr):
		if ws, ok := exitErr.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return nil, fmt.Errorf("%w (%s): %s", ErrChildCrashed, ws.Signal(), crashMessage(stderr.String()))
		}
		if res != nil && res.Error != "" {
			return nil, errors.New(res.Error)
		}
		how := fmt.Sprintf("exit status %d", exitErr.ExitCode())
		if strings.Contains(stderr.String(), "SIGABRT") { // the Go runtime reports the abort, exits 2
			how = "aborted, " + how
		}
		return nil, fmt.Errorf("%w (%s): %s", ErrChildCrashed, how, crashMessage(stderr.String()))
	case runErr != nil:
		return nil, fmt.Errorf("child process: %w", runErr)
	case parseErr != nil:
		return nil, fmt.Errorf("child process gave no result: %w; its output: %s", parseErr, crashMessage(stderr.String()))
	case !res.OK:
		return nil, errors.New(res.Error)
	}
	return res, nil
}

func lastResult(out []byte) (*checkResult, error) {
	lines := bytes.Split(bytes.TrimSpace(out), []byte("\n"))
	for i := len(lines) - 1; i >= 0; i-- {
		var r checkResult
		if bytes.HasPrefix(lines[i], []byte("{")) && json.Unmarshal(lines[i], &r) == nil {
			return &r, nil
		}
	}
	return nil, errors.New("no JSON result line")
}

// crashMessage picks OpenCV's message out of a crashed child's stderr
// ("terminate called after throwing … what(): OpenCV(4.6.0) …: error: …").
func crashMessage(stderr string) string {
	stderr = strings.TrimSpace(stderr)
	if stderr == "" {
		return "no output"
	}
	var picked []string
	sc := bufio.NewScanner(strings.NewReader(stderr))
	sc.Buffer(make([]byte, 0, 4096), childOutputLimit)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if i := strings.Index(l, "what():"); i >= 0 {
			picked = append(picked, strings.TrimSpace(l[i+len("what():"):]))
		} else if strings.Contains(l, "error:") || strings.HasPrefix(l, "terminate called") {
			picked = append(picked, l)
		}
	}
	msg := strings.Join(picked, "; ")
	if msg == "" {
		lines := strings.Split(stderr, "\n")
		msg = strings.Join(lines[max(0, len(lines)-3):], "; ")
	}
	if len(msg) > 1000 {
		msg = msg[:1000] + "…"
	}
	return msg
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) Bytes() []byte  { return t.b }
func (t *tailBuffer) String() string { return string(t.b) }

// ServeModelCheck is the child side of CheckModel: it reads the request from
// r, loads the model with OpenCV, runs one forward pass on a zero blob, and
// writes one JSON result line to w. An OpenCV abort ends the process, which
// the parent reports. The returned error only sets the exit status; the
// agent's hidden subcommand calls it with os.Stdin and os.Stdout.
func ServeModelCheck(r io.Reader, w io.Writer) error {
	res := serveModelCheck(r)
	line, _ := json.Marshal(res)
	if _, err := fmt.Fprintf(w, "%s\n", line); err != nil {
		return err
	}
	if !res.OK {
		return errors.New(res.Error)
	}
	return nil
}

func serveModelCheck(r io.Reader) checkResult {
	fail := func(format string, args ...any) checkResult {
		return checkResult{Error: fmt.Sprintf(format, args...)}
	}
	var req checkRequest
	if err := json.NewDecoder(io.LimitReader(r, 1<<20)).Decode(&req); err != nil {
		return fail("bad check request: %v", err)
	}
	if err := req.Spec.validate(); err != nil {
		return fail("%v", err)
	}
	// The child hashes again: what it loads is what the parent checked.
	data, d, err := readModel(req.Path, &ModelEntry{Name: "(parent's copy)", SHA256: req.SHA256})
	if err != nil {
		return fail("%v", err)
	}
	_ = d
	start := time.Now()
	net, err := gocv.ReadNetFromONNXBytes(data)
	if err != nil {
		return fail("reading the network: %v", err)
	}
	defer net.Close()
	if net.Empty() {
		return fail("OpenCV read no layers from the model")
	}
	loaded := time.Since(start)
	res := checkResult{Layers: len(net.GetLayerNames()), LoadMS: ms(loaded)}
	sizes := []int{1, req.Spec.InputChannels, req.Spec.InputHeight, req.Spec.InputWidth}
	blob := gocv.NewMatWithSizesWithScalar(sizes, gocv.MatTypeCV32F, gocv.NewScalar(0, 0, 0, 0))
	defer blob.Close()
	net.SetInput(blob, "")
	start = time.Now()
	out := net.Forward("")
	defer out.Close()
	res.ForwardMS = ms(time.Since(start))
	if out.Empty() {
		return fail("the forward pass produced no output")
	}
	res.OutputShape = out.Size()
	res.OK = true
	return res
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
