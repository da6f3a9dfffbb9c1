package detect

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xueliang/xl/agent/internal/detect/onnxtest"
)

func TestLoadManifest(t *testing.T) {
	e := manifestEntry(t)
	if e.Version != "0.1.1" || e.File != "yolox_nano.onnx" || e.Bytes != 3678356 ||
		e.SHA256 != "e8af074932d4ed7e232278e3055cefcdea3edf178874a3694ae292649fb464dd" {
		t.Errorf("entry %+v", e)
	}
	spec := e.Spec()
	if spec.InputWidth != 416 || spec.InputHeight != 416 || spec.InputChannels != 3 || dimsString(spec.OutputShape) != "[1 3549 85]" {
		t.Errorf("spec %+v", spec)
	}
	cfg := Config{Entry: e}
	cfg.setDefaults()
	if err := cfg.validateYOLOX(); err != nil {
		t.Errorf("the manifest's model does not fit the decoder: %v", err)
	}
}

func TestParseManifestErrors(t *testing.T) {
	const good = `models:
  - name: m
    version: "1"
    file: m.onnx
    sha256: e8af074932d4ed7e232278e3055cefcdea3edf178874a3694ae292649fb464dd
    bytes: 10
    input: {width: 416, height: 416, channels: 3}
    output: {shape: [1, 3549, 85]}
`
	if _, err := ParseManifest([]byte(good), "good.yaml"); err != nil {
		t.Fatalf("good manifest: %v", err)
	}
	tests := []struct{ name, yaml, want string }{
		{"empty", "", "empty"},
		{"no models", "models: []\n", "no models"},
		{"unknown key", strings.Replace(good, "bytes: 10", "bytez: 10", 1), "field bytez not found"},
		{"bad sha256", strings.Replace(good, "sha256: e8af", "sha256: E8AF", 1), "not 64 lower-case hex digits"},
		{"no name", strings.Replace(good, "name: m", "name: \"\"", 1), "name is empty"},
		{"no output shape", strings.Replace(good, "output: {shape: [1, 3549, 85]}", "output: {}", 1), "want 1–8 dimensions"},
		{"unsupported format", strings.Replace(good, "bytes: 10", "bytes: 10\n    format: tflite", 1), `format "tflite"`},
		{"twice", good + strings.TrimPrefix(good, "models:\n"), "appears twice"},
		{"not yaml", "models: [", "good.yaml"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseManifest([]byte(tc.yaml), "good.yaml")
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
	if _, err := LoadManifest(filepath.Join(t.TempDir(), "none.yaml")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing manifest: %v", err)
	}
}

func TestVerifyFile(t *testing.T) {
	entry := manifestEntry(t)
	shared := readShared(t)
	d, err := VerifyFile(modelPath(t), entry)
	if err != nil || !d.Verified || d.SHA256 != entry.SHA256 || d.Bytes != entry.Bytes {
		t.Fatalf("shared model: %+v, %v", d, err)
	}
	if d, err := VerifyFile(modelPath(t), nil); err != nil || d.Verified || d.SHA256 != entry.SHA256 {
		t.Fatalf("without an entry: %+v, %v", d, err)
	}
	flipped := append([]byte(nil), shared...)
	flipped[len(flipped)/2] ^= 1
	dir := t.TempDir()
	tests := []struct {
		name  string
		path  string
		entry *ModelEntry
		want  string
	}{
		{"missing", filepath.Join(dir, "missing.onnx"), entry, "does not exist"},
		{"directory", dir, entry, "is not a regular file"},
		{"empty", writeFile(t, "empty.onnx", nil), entry, "is empty"},
		{"truncated", writeFile(t, "truncated.onnx", shared[:1000]), entry,
			"size mismatch: manifest yolox_nano says 3678356 bytes, the file has 1000"},
		{"one bit flipped", writeFile(t, "flipped.onnx", flipped), entry,
			"sha256 mismatch: manifest yolox_nano 0.1.1 expects e8af074932d4ed7e232278e3055cefcdea3edf178874a3694ae292649fb464dd, the file has "},
		{"no path", "", nil, "no path given"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := VerifyFile(tc.path, tc.entry)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
	if os.Geteuid() != 0 { // root reads anything
		p := writeFile(t, "unreadable.onnx", shared)
		if err := os.Chmod(p, 0); err != nil {
			t.Fatal(err)
		}
		if _, err := VerifyFile(p, entry); err == nil || !strings.Contains(err.Error(), "not readable") {
			t.Errorf("unreadable file: %v", err)
		}
	}
}

// NewYOLOX refuses every bad file with an error, before OpenCV sees it or
// through the child process.
func TestNewYOLOXRefusesBadModels(t *testing.T) {
	checkMats(t)
	entry := manifestEntry(t)
	shared := readShared(t)
	wrongSHA := *entry
	wrongSHA.SHA256 = strings.Repeat("ab", 32)
	tests := []struct {
		name  string
		path  string
		entry *ModelEntry
		want  string
	}{
		{"missing", filepath.Join(t.TempDir(), "none.onnx"), entry, "does not exist"},
		{"truncated, with the manifest", writeFile(t, "t.onnx", shared[:len(shared)-1]), entry, "size mismatch"},
		{"truncated, without", writeFile(t, "t.onnx", shared[:len(shared)-1]), nil, "truncated?"},
		{"random bytes", writeFile(t, "r.onnx", randomBytes(1<<16)), nil, "not an ONNX protobuf"},
		{"sha256 mismatch", modelPath(t), &wrongSHA, "sha256 mismatch"},
		{"wrong output shape", writeFile(t, "w.onnx", onnxtest.Tiny{Op: "Identity", InDims: []int64{1, 3, 416, 416}, OutDims: []int64{-1, -1, -1}}.Encode()),
			nil, "output shape is [1 3 416 416], want [1 3549 85]"},
		{"OpenCV aborts", writeFile(t, "a.onnx", onnxtest.Tiny{Op: "XlNoSuchOperator", InDims: []int64{1, 3, 416, 416}, OutDims: []int64{1, 3549, 85}}.Encode()),
			nil, "crashed the checking process"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			y, err := NewYOLOX(Config{Model: tc.path, Entry: tc.entry}, nil, quietLog())
			if err == nil {
				y.Close()
				t.Fatal("loaded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
	if _, err := NewYOLOX(Config{}, nil, quietLog()); err == nil {
		t.Error("no model path accepted")
	}
	if _, err := NewYOLOX(Config{Model: modelPath(t), Entry: entry, Allowed: []string{"persn"}}, nil, quietLog()); err == nil ||
		!strings.Contains(err.Error(), `unknown class "persn"`) {
		t.Errorf("unknown class: %v", err)
	}
	if _, err := NewYOLOX(Config{Model: modelPath(t), Entry: entry, InputSize: 640}, nil, quietLog()); err == nil {
		t.Error("input size contradicting the manifest accepted")
	}
}
