// Package config loads the YAML configuration of the xl binaries in one way:
// defaults → file → environment (XL_…) → Validate. Unknown keys are errors,
// and every error is reported at once with its key and, when it comes from
// the file, its line.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/viper"
	"gopkg.in/yaml.v3"
)

// EnvPrefix is the prefix of every environment override.
const EnvPrefix = "XL"

// FieldError is one problem in a configuration, located by key.
type FieldError struct {
	Key  string // e.g. cameras[0].zones[1].polygon; empty for the whole file
	Line int    // line in the file, 0 when unknown (defaults, environment)
	Msg  string
}

func (e FieldError) String() string {
	switch {
	case e.Key == "":
		return e.Msg
	case e.Line > 0:
		return fmt.Sprintf("line %d: %s: %s", e.Line, e.Key, e.Msg)
	default:
		return fmt.Sprintf("%s: %s", e.Key, e.Msg)
	}
}

// Errors is every problem found in one configuration.
type Errors struct {
	File string
	List []FieldError
}

func (e *Errors) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d configuration error(s):", e.fileName(), len(e.List))
	for _, fe := range e.List {
		b.WriteString("\n  ")
		b.WriteString(fe.String())
	}
	return b.String()
}

func (e *Errors) fileName() string {
	if e.File == "" {
		return "config"
	}
	return e.File
}

// Validator is implemented by configuration types. Validate returns every
// problem it finds; keys use the same form as the file (a.b[0].c).
type Validator interface {
	Validate() []FieldError
}

// Defaulter is implemented by configuration types that must fill in defaults
// after decoding, typically for elements of lists.
type Defaulter interface {
	ApplyDefaults()
}

// Load fills dst, which must already hold the defaults, from the YAML file at
// path (skipped when path is empty) and from the environment, then validates
// it. It returns *Errors listing every problem.
func Load(path string, dst Validator) error {
	var data []byte
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return &Errors{File: path, List: []FieldError{{Msg: err.Error()}}}
		}
		data = b
	}
	return LoadBytes(path, data, dst, os.LookupEnv)
}

// LoadBytes is Load with the file's content and the environment given.
func LoadBytes(name string, data []byte, dst Validator, lookupEnv func(string) (string, bool)) error {
	errs := &Errors{File: name}
	lines := map[string]int{}
	typ := reflect.TypeOf(dst).Elem()

	v := viper.New()
	v.SetConfigType("yaml")
	if len(bytes.TrimSpace(data)) > 0 {
		var root yaml.Node
		if err := yaml.Unmarshal(data, &root); err != nil {
			errs.List = append(errs.List, yamlSyntaxError(err))
			return errs
		}
		if len(root.Content) > 0 {
			walk(root.Content[0], typ, "", lines, errs)
		}
		if err := v.ReadConfig(bytes.NewReader(data)); err != nil {
			errs.List = append(errs.List, FieldError{Msg: err.Error()})
			return errs
		}
	}

	// Environment overrides for every scalar key (lists cannot be set this way).
	for _, key := range leafKeys(typ, "") {
		env := EnvName(key)
		if val, ok := lookupEnv(env); ok {
			v.Set(key, val)
		}
	}

	err := v.Unmarshal(dst, func(c *mapstructure.DecoderConfig) {
		c.WeaklyTypedInput = true
		c.DecodeHook = mapstructure.ComposeDecodeHookFunc(
			mapstructure.StringToTimeDurationHookFunc(),
			mapstructure.StringToSliceHookFunc(","),
		)
	})
	errs.List = append(errs.List, flatten(err)...)
	if d, ok := dst.(Defaulter); ok {
		d.ApplyDefaults()
	}
	// Validate even when decoding failed, so that every problem is reported
	// in one go.
	errs.List = append(errs.List, dst.Validate()...)
	for i := range errs.List {
		if errs.List[i].Line == 0 {
			errs.List[i].Line = lookupLine(lines, errs.List[i].Key)
		}
	}
	if len(errs.List) == 0 {
		return nil
	}
	sort.SliceStable(errs.List, func(i, j int) bool {
		a, b := errs.List[i], errs.List[j]
		if (a.Line == 0) != (b.Line == 0) {
			return a.Line != 0
		}
		return a.Line < b.Line
	})
	errs.List = dedupe(errs.List)
	return errs
}

func dedupe(list []FieldError) []FieldError {
	seen := map[FieldError]bool{}
	out := list[:0]
	for _, e := range list {
		if !seen[e] {
			seen[e] = true
			out = append(out, e)
		}
	}
	return out
}

// EnvName is the environment variable that overrides a key:
// http.addr → XL_HTTP_ADDR.
func EnvName(key string) string {
	return EnvPrefix + "_" + strings.ToUpper(strings.NewReplacer(".", "_").Replace(key))
}

func yamlSyntaxError(err error) FieldError {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	fe := FieldError{Msg: "YAML syntax: " + msg}
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if i := strings.Index(rest, ":"); i > 0 {
			if n, err := strconv.Atoi(rest[:i]); err == nil {
				fe.Line = n
				fe.Msg = "YAML syntax:" + rest[i+1:]
				fe.Key = "(file)"
			}
		}
	}
	return fe
}

// flatten turns mapstructure's joined errors into one FieldError each.
func flatten(err error) []FieldError {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []FieldError
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	var de *mapstructure.DecodeError
	if errors.As(err, &de) {
		msg := de.Unwrap().Error()
		var ute *mapstructure.UnconvertibleTypeError
		if errors.As(de.Unwrap(), &ute) {
			msg = fmt.Sprintf("want %s, got %v", ute.Expected.Type(), ute.Value)
		}
		var pe *mapstructure.ParseError
		if errors.As(de.Unwrap(), &pe) {
			msg = fmt.Sprintf("want %s, got %q", pe.Expected.Type(), fmt.Sprint(pe.Value))
		}
		return []FieldError{{Key: de.Name(), Msg: msg}}
	}
	// viper wraps the decode error; look inside before giving up.
	if u := errors.Unwrap(err); u != nil {
		return flatten(u)
	}
	return []FieldError{{Msg: err.Error()}}
}

// fieldName is the configuration key of a struct field, or "" if it has none.
func fieldName(f reflect.StructField) string {
	if !f.IsExported() {
		return ""
	}
	tag := f.Tag.Get("mapstructure")
	name, _, _ := strings.Cut(tag, ",")
	if name == "-" {
		return ""
	}
	if name == "" {
		name = strings.ToLower(f.Name)
	}
	return name
}

func deref(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t
}

func isLeafStruct(t reflect.Type) bool {
	// Types that decode from a scalar (time.Duration is an int64; time.Time
	// and similar have a text form).
	_, ok := reflect.New(t).Interface().(interface{ UnmarshalText([]byte) error })
	return ok
}

// walk checks the YAML tree against the type: unknown keys and wrong shapes
// are reported with their lines, and the line of every key is recorded.
func walk(n *yaml.Node, t reflect.Type, path string, lines map[string]int, errs *Errors) {
	t = deref(t)
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if path != "" {
		if _, ok := lines[path]; !ok {
			lines[path] = n.Line
		}
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return
	}
	switch {
	case t.Kind() == reflect.Struct && !isLeafStruct(t):
		if n.Kind != yaml.MappingNode {
			errs.List = append(errs.List, FieldError{Key: orRoot(path), Line: n.Line, Msg: "want a mapping of keys"})
			return
		}
		fields := map[string]reflect.StructField{}
		var names []string
		for i := range t.NumField() {
			if name := fieldName(t.Field(i)); name != "" {
				fields[name] = t.Field(i)
				names = append(names, name)
			}
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			key := join(path, k.Value)
			lines[key] = k.Line
			f, ok := fields[strings.ToLower(k.Value)]
			if !ok {
				msg := "unknown key"
				if s := suggest(k.Value, names); s != "" {
					msg += fmt.Sprintf(" (did you mean %q?)", s)
				}
				errs.List = append(errs.List, FieldError{Key: key, Line: k.Line, Msg: msg})
				continue
			}
			walk(val, f.Type, key, lines, errs)
		}
	case t.Kind() == reflect.Slice && t.Elem().Kind() != reflect.Uint8:
		if n.Kind != yaml.SequenceNode {
			if t.Elem().Kind() == reflect.String && n.Kind == yaml.ScalarNode {
				return // "a,b" is accepted for a list of strings
			}
			errs.List = append(errs.List, FieldError{Key: orRoot(path), Line: n.Line, Msg: "want a list"})
			return
		}
		for i, c := range n.Content {
			walk(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i), lines, errs)
		}
	case t.Kind() == reflect.Array:
		if n.Kind != yaml.SequenceNode {
			errs.List = append(errs.List, FieldError{Key: orRoot(path), Line: n.Line, Msg: "want a list"})
			return
		}
		if len(n.Content) != t.Len() {
			errs.List = append(errs.List, FieldError{Key: path, Line: n.Line, Msg: fmt.Sprintf("want %d values, got %d", t.Len(), len(n.Content))})
			return
		}
		for i, c := range n.Content {
			walk(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i), lines, errs)
		}
	case t.Kind() == reflect.Map:
		if n.Kind != yaml.MappingNode {
			errs.List = append(errs.List, FieldError{Key: orRoot(path), Line: n.Line, Msg: "want a mapping"})
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			key := join(path, n.Content[i].Value)
			lines[key] = n.Content[i].Line
			walk(n.Content[i+1], t.Elem(), key, lines, errs)
		}
	default: // scalar
		if n.Kind != yaml.ScalarNode {
			errs.List = append(errs.List, FieldError{Key: orRoot(path), Line: n.Line, Msg: "want a single value, not a list or mapping"})
		}
	}
}

func orRoot(p string) string {
	if p == "" {
		return "(root)"
	}
	return p
}

func join(path, key string) string {
	key = strings.ToLower(key)
	if path == "" {
		return key
	}
	return path + "." + key
}

// leafKeys lists the keys of every scalar reachable without passing through
// a list or map: the keys the environment can override.
func leafKeys(t reflect.Type, prefix string) []string {
	t = deref(t)
	var out []string
	for i := range t.NumField() {
		f := t.Field(i)
		name := fieldName(f)
		if name == "" {
			continue
		}
		key := join(prefix, name)
		ft := deref(f.Type)
		switch {
		case ft.Kind() == reflect.Struct && !isLeafStruct(ft):
			out = append(out, leafKeys(ft, key)...)
		case ft.Kind() == reflect.Map, ft.Kind() == reflect.Array:
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() != reflect.String:
		default:
			out = append(out, key)
		}
	}
	return out
}

// lookupLine finds the line of key or of its nearest ancestor in the file.
func lookupLine(lines map[string]int, key string) int {
	for key != "" {
		if l, ok := lines[strings.ToLower(key)]; ok {
			return l
		}
		i := strings.LastIndexAny(key, ".[")
		if i < 0 {
			return 0
		}
		key = key[:i]
	}
	return 0
}

// suggest returns the known name closest to s, if it is close enough to be
// a likely typo.
func suggest(s string, names []string) string {
	best, bestD := "", 3
	for _, n := range names {
		if d := distance(strings.ToLower(s), n); d < bestD {
			best, bestD = n, d
		}
	}
	return best
}

func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
