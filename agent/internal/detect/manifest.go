package detect

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"regexp"
	"slices"

	"gopkg.in/yaml.v3"
)

// Manifest lists the models the agent may load (models/manifest.yaml).
type Manifest struct {
	Models []ModelEntry `yaml:"models"`
}

// ModelEntry is one model in the manifest.
type ModelEntry struct {
	Name    string     `yaml:"name"`
	Version string     `yaml:"version"`
	File    string     `yaml:"file"`
	SHA256  string     `yaml:"sha256"`
	Bytes   int64      `yaml:"bytes"`
	Format  string     `yaml:"format"`
	Input   InputSpec  `yaml:"input"`
	Output  OutputSpec `yaml:"output"`
	Classes string     `yaml:"classes"`
	Licence string     `yaml:"licence"`
}

// InputSpec is the network input a model expects.
type InputSpec struct {
	Width     int     `yaml:"width"`
	Height    int     `yaml:"height"`
	Channels  int     `yaml:"channels"`
	Order     string  `yaml:"order"`     // BGR or RGB
	Scale     float64 `yaml:"scale"`     // multiplier applied to 0–255 pixel values
	PadValue  float64 `yaml:"pad_value"` // letterbox padding
	Letterbox string  `yaml:"letterbox"` // top-left
}

// OutputSpec is the network output a model produces.
type OutputSpec struct {
	Shape   []int  `yaml:"shape"`
	Strides []int  `yaml:"strides"`
	Decode  string `yaml:"decode"`
}

// ModelSpec is what the detector needs from a model: its input size and the
// shape of its output.
type ModelSpec struct {
	InputWidth, InputHeight, InputChannels int
	OutputShape                            []int
}

func (s ModelSpec) validate() error {
	if s.InputWidth < 16 || s.InputWidth > 4096 || s.InputHeight < 16 || s.InputHeight > 4096 {
		return fmt.Errorf("model input %dx%d outside 16–4096", s.InputWidth, s.InputHeight)
	}
	if s.InputChannels != 1 && s.InputChannels != 3 {
		return fmt.Errorf("model input channels %d, want 1 or 3", s.InputChannels)
	}
	if len(s.OutputShape) == 0 || len(s.OutputShape) > 8 {
		return fmt.Errorf("model output shape %v: want 1–8 dimensions", s.OutputShape)
	}
	for _, d := range s.OutputShape {
		if d < 1 {
			return fmt.Errorf("model output shape %v: dimensions must be positive", s.OutputShape)
		}
	}
	return nil
}

// Spec is the entry's input and output as a ModelSpec.
func (e *ModelEntry) Spec() ModelSpec {
	return ModelSpec{InputWidth: e.Input.Width, InputHeight: e.Input.Height, InputChannels: e.Input.Channels,
		OutputShape: slices.Clone(e.Output.Shape)}
}

var hexSHA256 = regexp.MustCompile(`^[0-9a-f]{64}$`)

func (e *ModelEntry) validate() error {
	var errs []error
	if e.Name == "" {
		errs = append(errs, errors.New("name is empty"))
	}
	if e.File == "" {
		errs = append(errs, errors.New("file is empty"))
	}
	if e.SHA256 != "" && !hexSHA256.MatchString(e.SHA256) {
		errs = append(errs, fmt.Errorf("sha256 %q is not 64 lower-case hex digits", e.SHA256))
	}
	if e.Bytes < 0 {
		errs = append(errs, fmt.Errorf("bytes %d is negative", e.Bytes))
	}
	if e.Format != "" && e.Format != "onnx" {
		errs = append(errs, fmt.Errorf("format %q: only onnx is supported", e.Format))
	}
	if e.Input.Order != "" && e.Input.Order != "BGR" && e.Input.Order != "RGB" {
		errs = append(errs, fmt.Errorf("input.order %q: want BGR or RGB", e.Input.Order))
	}
	if e.Input.Letterbox != "" && e.Input.Letterbox != "top-left" {
		errs = append(errs, fmt.Errorf("input.letterbox %q: only top-left is supported", e.Input.Letterbox))
	}
	if e.Output.Decode != "" && e.Output.Decode != "yolox" {
		errs = append(errs, fmt.Errorf("output.decode %q: only yolox is supported", e.Output.Decode))
	}
	if err := e.Spec().validate(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// LoadManifest reads and validates a model manifest. Unknown keys are
// errors, as in the agent's configuration.
func LoadManifest(path string) (*Manifest, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("model manifest: %w", err)
	}
	return ParseManifest(data, path)
}

// ParseManifest is LoadManifest on bytes; name is used in errors.
func ParseManifest(data []byte, name string) (*Manifest, error) {
	var m Manifest
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&m); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("model manifest %s: empty", name)
		}
		return nil, fmt.Errorf("model manifest %s: %w", name, err)
	}
	if len(m.Models) == 0 {
		return nil, fmt.Errorf("model manifest %s: no models", name)
	}
	var errs []error
	seen := map[string]bool{}
	for i := range m.Models {
		e := &m.Models[i]
		if err := e.validate(); err != nil {
			errs = append(errs, fmt.Errorf("models[%d] (%s): %w", i, e.Name, err))
		}
		if seen[e.Name] {
			errs = append(errs, fmt.Errorf("models[%d]: name %q appears twice", i, e.Name))
		}
		seen[e.Name] = true
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("model manifest %s: %w", name, err)
	}
	return &m, nil
}

// Lookup returns the entry with that name.
func (m *Manifest) Lookup(name string) (*ModelEntry, bool) {
	for i := range m.Models {
		if m.Models[i].Name == name {
			return &m.Models[i], true
		}
	}
	return nil, false
}

// FileDigest is what VerifyFile found.
type FileDigest struct {
	Path     string
	Bytes    int64
	SHA256   string // hex
	Verified bool   // the entry gave a sha256 and the file matches it
}

// MaxModelBytes is the largest model file read (YOLOX-Nano is 3.6 MB).
const MaxModelBytes = 256 << 20

// VerifyFile checks that the model file exists, is a readable regular file
// and, when entry is given, has the size and sha256 the manifest says. It
// reads the file but does not load it.
func VerifyFile(path string, entry *ModelEntry) (FileDigest, error) {
	_, d, err := readModel(path, entry)
	return d, err
}

// readModel is VerifyFile returning the bytes it checked, so that what is
// loaded is exactly what was hashed.
func readModel(path string, entry *ModelEntry) ([]byte, FileDigest, error) {
	d := FileDigest{Path: path}
	if path == "" {
		return nil, d, errors.New("model file: no path given")
	}
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, d, fmt.Errorf("model file %s does not exist: %w", path, err)
	case err != nil:
		return nil, d, fmt.Errorf("model file %s: %w", path, err)
	case !st.Mode().IsRegular():
		return nil, d, fmt.Errorf("model file %s is not a regular file (%s)", path, st.Mode().Type())
	case st.Size() == 0:
		return nil, d, fmt.Errorf("model file %s is empty", path)
	case st.Size() > MaxModelBytes:
		return nil, d, fmt.Errorf("model file %s is %d bytes, more than the %d allowed", path, st.Size(), int64(MaxModelBytes))
	}
	if entry != nil && entry.Bytes > 0 && st.Size() != entry.Bytes {
		return nil, d, fmt.Errorf("model file %s: size mismatch: manifest %s says %d bytes, the file has %d (truncated or a different file?)",
			path, entry.Name, entry.Bytes, st.Size())
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, d, fmt.Errorf("model file %s is not readable: %w", path, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxModelBytes+1))
	if err != nil {
		return nil, d, fmt.Errorf("model file %s: read: %w", path, err)
	}
	sum := sha256.Sum256(data)
	d.Bytes, d.SHA256 = int64(len(data)), hex.EncodeToString(sum[:])
	if entry != nil && entry.Bytes > 0 && d.Bytes != entry.Bytes {
		return nil, d, fmt.Errorf("model file %s changed while being read: %d bytes, manifest %s says %d", path, d.Bytes, entry.Name, entry.Bytes)
	}
	if entry != nil && entry.SHA256 != "" {
		if d.SHA256 != entry.SHA256 {
			return nil, d, fmt.Errorf("model file %s: sha256 mismatch: manifest %s %s expects %s, the file has %s",
				path, entry.Name, entry.Version, entry.SHA256, d.SHA256)
		}
		d.Verified = true
	}
	return data, d, nil
}
