package detect

import (
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xueliang/xl/agent/internal/detect/onnxtest"
)

var yoloxSpec = ModelSpec{InputWidth: 416, InputHeight: 416, InputChannels: 3, OutputShape: []int{1, 3549, 85}}

func writeFile(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func readShared(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(modelPath(t))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func randomBytes(n int) []byte {
	r := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestTinyModelParses(t *testing.T) {
	data := onnxtest.Tiny{Op: "Identity", InDims: []int64{1, 3, 416, 416}, OutDims: []int64{-1, 3, -1, -1}}.Encode()
	info, err := inspectONNX(data)
	if err != nil {
		t.Fatal(err)
	}
	if info.IRVersion != 7 || info.Opset != 13 || info.Nodes != 1 || len(info.Inputs) != 1 || len(info.Outputs) != 1 {
		t.Fatalf("read %+v", info)
	}
	if got := dimsString(info.Inputs[0].Dims); got != "[1 3 416 416]" {
		t.Errorf("input dims %s", got)
	}
	if got := dimsString(info.Outputs[0].Dims); got != "[? 3 ? ?]" {
		t.Errorf("output dims %s", got)
	}
}

func TestInspectSharedModel(t *testing.T) {
	info, err := inspectONNX(readShared(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := info.checkDeclared(yoloxSpec); err != nil {
		t.Fatal(err)
	}
	t.Logf("ir %d opset %d, %d nodes, inputs %v, outputs %v", info.IRVersion, info.Opset, info.Nodes, info.Inputs, info.Outputs)
}

func TestCheckModel(t *testing.T) {
	shared := readShared(t)
	tests := []struct {
		name    string
		data    []byte // nil: the file does not exist
		want    string // "" means no error
		crashed bool
	}{
		{name: "the shared YOLOX-Nano", data: shared},
		{name: "missing file", want: "does not exist"},
		{name: "empty file", data: []byte{}, want: "is empty"},
		{name: "truncated copy", data: shared[:len(shared)/2], want: "run past the end"},
		{name: "random bytes", data: randomBytes(4096), want: "not an ONNX protobuf"},
		{name: "text file", data: []byte("models:\n  - name: yolox_nano\n"), want: "not an ONNX"},
		{name: "declared input size differs", data: onnxtest.Tiny{Op: "Identity", InDims: []int64{1, 3, 640, 640}}.Encode(),
			want: "model input images [1 3 640 640], want [1 3 416 416]"},
		{name: "declared output shape differs", data: onnxtest.Tiny{Op: "Identity", InDims: []int64{1, 3, 416, 416}, OutDims: []int64{1, 3, 416, 416}}.Encode(),
			want: "model output output [1 3 416 416], want [1 3549 85]"},
		{name: "valid ONNX, wrong output shape (found by the child's forward pass)",
			data: onnxtest.Tiny{Op: "Identity", InDims: []int64{1, 3, 416, 416}, OutDims: []int64{-1, -1, -1}}.Encode(),
			want: "output shape is [1 3 416 416], want [1 3549 85]"},
		{name: "valid ONNX that OpenCV cannot load (aborts the child)",
			data: onnxtest.Tiny{Op: "XlNoSuchOperator", InDims: []int64{1, 3, 416, 416}, OutDims: []int64{1, 3549, 85}}.Encode(),
			want: "XlNoSuchOperator", crashed: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkMats(t)
			path := filepath.Join(t.TempDir(), "model.onnx")
			if tc.data != nil {
				path = writeFile(t, "model.onnx", tc.data)
			}
			start := time.Now()
			err := CheckModel(path, yoloxSpec)
			t.Logf("%v: %v", time.Since(start).Round(time.Millisecond), err)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name the file", err)
			}
			if got := errors.Is(err, ErrChildCrashed); got != tc.crashed {
				t.Errorf("errors.Is(err, ErrChildCrashed) = %v, want %v", got, tc.crashed)
			}
		})
	}
}

// The child process contains what the Go checks would have refused: files
// handed straight to OpenCV abort the child, and the parent reports it.
func TestChildContainsOpenCVAborts(t *testing.T) {
	shared := readShared(t)
	for name, data := range map[string][]byte{
		"truncated": shared[:len(shared)/2],
		"random":    randomBytes(4096),
	} {
		t.Run(name, func(t *testing.T) {
			_, d, err := readModel(writeFile(t, "model.onnx", data), nil)
			if err != nil {
				t.Fatal(err)
			}
			_, err = runChildCheck(t.Context(), d.Path, d.SHA256, yoloxSpec)
			t.Log(err)
			if !errors.Is(err, ErrChildCrashed) {
				t.Fatalf("error %v, want ErrChildCrashed", err)
			}
			if !strings.Contains(err.Error(), "OpenCV") {
				t.Errorf("error %q does not carry OpenCV's message", err)
			}
		})
	}
}

func TestChildRefusesAChangedFile(t *testing.T) {
	path := writeFile(t, "model.onnx", onnxtest.Tiny{Op: "Identity", InDims: []int64{1, 3, 416, 416}, OutDims: []int64{1, 3, 416, 416}}.Encode())
	_, err := runChildCheck(t.Context(), path, strings.Repeat("0", 64), yoloxSpec)
	if err == nil || !strings.Contains(err.Error(), "sha256 mismatch") || errors.Is(err, ErrChildCrashed) {
		t.Fatalf("error %v, want a sha256 mismatch reported by the child", err)
	}
}

func TestCheckModelWithoutChildCommand(t *testing.T) {
	saved := ChildCommand
	ChildCommand = nil
	defer func() { ChildCommand = saved }()
	err := CheckModel(modelPath(t), yoloxSpec)
	if !errors.Is(err, ErrNoChildCommand) {
		t.Fatalf("error %v, want ErrNoChildCommand", err)
	}
	// A model the manifest vouches for loads without a child process.
	y := yolox(t, Config{})
	if y.Model().SHA256 != manifestEntry(t).SHA256 {
		t.Errorf("model sha256 %s", y.Model().SHA256)
	}
	// One it does not is refused.
	if _, err := NewYOLOX(Config{Model: modelPath(t)}, nil, quietLog()); !errors.Is(err, ErrNoChildCommand) {
		t.Fatalf("unverified model without a child command: %v", err)
	}
}

func TestCrashMessage(t *testing.T) {
	stderr := "[ERROR:0@0.010] global onnx_importer.cpp:1021 handleNode DNN/ONNX: ERROR during processing node\n" +
		"terminate called after throwing an instance of 'cv::Exception'\n" +
		"  what():  OpenCV(4.6.0) ./modules/dnn/src/net_impl.cpp:115: error: (-2:Unspecified error) Can't create layer \"output\" of type \"XlNoSuchOperator\" in function 'getLayerInstance'\n\n" +
		"SIGABRT: abort\nPC=0x7f0 m=0 sigcode=18446744073709551610\n"
	got := crashMessage(stderr)
	if !strings.HasPrefix(got, "terminate called after throwing an instance of 'cv::Exception'; OpenCV(4.6.0)") || !strings.Contains(got, "XlNoSuchOperator") {
		t.Errorf("crashMessage = %q", got)
	}
	if got := crashMessage(""); got != "no output" {
		t.Errorf("empty stderr: %q", got)
	}
}
