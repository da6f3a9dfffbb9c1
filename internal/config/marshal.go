package config

import (
	"encoding"
	"fmt"
	"reflect"
	"time"

	"gopkg.in/yaml.v3"
)

// Marshal writes a configuration as YAML with the keys LoadBytes reads
// (mapstructure names, durations as "1m30s"), so that a loaded
// configuration can be written back and loaded again to the same value.
func Marshal(cfg any) ([]byte, error) {
	v, err := plain(reflect.ValueOf(cfg), "")
	if err != nil {
		return nil, err
	}
	return yaml.Marshal(v)
}

var durationType = reflect.TypeOf(time.Duration(0))

// plain turns v into maps, lists and scalars for the YAML encoder.
func plain(v reflect.Value, path string) (any, error) {
	for v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
		if v.IsNil() {
			return nil, nil
		}
		v = v.Elem()
	}
	if v.Type() == durationType {
		return time.Duration(v.Int()).String(), nil
	}
	if v.CanInterface() {
		if tm, ok := v.Interface().(encoding.TextMarshaler); ok && v.Kind() != reflect.Struct || ok && isLeafStruct(v.Type()) {
			b, err := tm.MarshalText()
			if err != nil {
				return nil, fmt.Errorf("%s: %w", orRoot(path), err)
			}
			return string(b), nil
		}
	}
	switch v.Kind() {
	case reflect.Struct:
		out := map[string]any{}
		t := v.Type()
		for i := range t.NumField() {
			name := fieldName(t.Field(i))
			if name == "" {
				continue
			}
			fv, err := plain(v.Field(i), join(path, name))
			if err != nil {
				return nil, err
			}
			if fv != nil {
				out[name] = fv
			}
		}
		return out, nil
	case reflect.Slice, reflect.Array:
		if v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.Uint8 {
			return string(v.Bytes()), nil
		}
		out := make([]any, v.Len())
		for i := range v.Len() {
			e, err := plain(v.Index(i), fmt.Sprintf("%s[%d]", path, i))
			if err != nil {
				return nil, err
			}
			out[i] = e
		}
		return out, nil
	case reflect.Map:
		out := map[string]any{}
		iter := v.MapRange()
		for iter.Next() {
			k := fmt.Sprint(iter.Key().Interface())
			e, err := plain(iter.Value(), join(path, k))
			if err != nil {
				return nil, err
			}
			out[k] = e
		}
		return out, nil
	case reflect.String:
		return v.String(), nil
	case reflect.Bool:
		return v.Bool(), nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return v.Int(), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return v.Uint(), nil
	case reflect.Float32, reflect.Float64:
		return v.Float(), nil
	}
	return nil, fmt.Errorf("%s: cannot write a %s", orRoot(path), v.Type())
}
