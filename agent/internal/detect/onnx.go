package detect

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// The ONNX file format is a protobuf ModelProto. This is a small reader of
// the protobuf wire format, enough to check a file's structure and read its
// declared inputs and outputs in pure Go, before OpenCV sees it: truncated or
// random files are refused here instead of aborting the process.

// onnxInfo is what inspectONNX reads from a model file.
type onnxInfo struct {
	IRVersion int64
	Opset     int64 // default domain
	Nodes     int
	OpTypes   []string // distinct, in order of first use
	Inputs    []valueInfo
	Outputs   []valueInfo
}

// valueInfo is a graph input or output; Dims is nil when no shape is
// declared, and a dimension is -1 when it is symbolic.
type valueInfo struct {
	Name string
	Dims []int64
}

func (v valueInfo) String() string {
	if v.Dims == nil {
		return v.Name + " (shape not declared)"
	}
	return v.Name + " " + dimsString(v.Dims)
}

func dimsString[T int | int64](d []T) string {
	parts := make([]string, len(d))
	for i, x := range d {
		if x < 0 {
			parts[i] = "?"
		} else {
			parts[i] = strconv.FormatInt(int64(x), 10)
		}
	}
	return "[" + strings.Join(parts, " ") + "]"
}

const (
	wireVarint = 0
	wireI64    = 1
	wireLen    = 2
	wireI32    = 5
)

// pbField is one protobuf field: its number, wire type, and either its
// varint value or its bytes.
type pbField struct {
	num   int
	wire  int
	value uint64
	data  []byte
	at    int // offset of the field's tag in the message
}

// pbFields parses one message's fields. It fails on anything that is not
// well-formed wire format: bad varints, group wire types, field number 0,
// lengths that run past the end.
func pbFields(msg []byte) ([]pbField, error) {
	var out []pbField
	for i := 0; i < len(msg); {
		at := i
		tag, n := pbVarint(msg[i:])
		if n <= 0 {
			return nil, fmt.Errorf("bad field tag at offset %d", at)
		}
		i += n
		f := pbField{num: int(tag >> 3), wire: int(tag & 7), at: at}
		if tag>>3 == 0 || tag>>3 > math.MaxInt32 {
			return nil, fmt.Errorf("bad field number %d at offset %d", tag>>3, at)
		}
		switch f.wire {
		case wireVarint:
			v, n := pbVarint(msg[i:])
			if n <= 0 {
				return nil, fmt.Errorf("field %d at offset %d: bad varint", f.num, at)
			}
			f.value, i = v, i+n
		case wireI64:
			if len(msg)-i < 8 {
				return nil, fmt.Errorf("field %d at offset %d runs past the end (truncated?)", f.num, at)
			}
			f.data, i = msg[i:i+8], i+8
		case wireI32:
			if len(msg)-i < 4 {
				return nil, fmt.Errorf("field %d at offset %d runs past the end (truncated?)", f.num, at)
			}
			f.data, i = msg[i:i+4], i+4
		case wireLen:
			l, n := pbVarint(msg[i:])
			if n <= 0 {
				return nil, fmt.Errorf("field %d at offset %d: bad length", f.num, at)
			}
			i += n
			if l > uint64(len(msg)-i) {
				return nil, fmt.Errorf("field %d at offset %d: %d bytes run past the end of the message (%d left; truncated?)", f.num, at, l, len(msg)-i)
			}
			f.data, i = msg[i:i+int(l)], i+int(l)
		default:
			return nil, fmt.Errorf("field %d at offset %d: unsupported wire type %d", f.num, at, f.wire)
		}
		out = append(out, f)
	}
	return out, nil
}

// pbVarint decodes a varint; n is 0 when it is cut short, -1 when it is
// longer than 10 bytes.
func pbVarint(b []byte) (v uint64, n int) {
	for i := 0; i < len(b) && i < 10; i++ {
		v |= uint64(b[i]&0x7f) << (7 * i)
		if b[i] < 0x80 {
			return v, i + 1
		}
	}
	if len(b) >= 10 {
		return 0, -1
	}
	return 0, 0
}

// ModelProto, GraphProto, NodeProto, ValueInfoProto, TypeProto and
// TensorShapeProto field numbers (onnx/onnx.proto).
const (
	modelIRVersion    = 1
	modelGraph        = 7
	modelOpsetImport  = 8
	opsetDomain       = 1
	opsetVersion      = 2
	graphNode         = 1
	graphInitializer  = 5
	graphInput        = 11
	graphOutput       = 12
	nodeOpType        = 4
	valueInfoName     = 1
	valueInfoType     = 2
	typeTensor        = 1
	tensorTypeElem    = 1
	tensorTypeShape   = 2
	shapeDim          = 1
	dimValue          = 1
	dimParam          = 2
	tensorProtoName   = 8
	maxSupportedIRVer = 20
)

// inspectONNX checks that data is a well-formed ONNX ModelProto with a graph
// that has nodes, inputs and outputs, and reads the declared shapes.
func inspectONNX(data []byte) (*onnxInfo, error) {
	if len(data) == 0 {
		return nil, errors.New("file is empty")
	}
	fields, err := pbFields(data)
	if err != nil {
		return nil, fmt.Errorf("not an ONNX protobuf: %w", err)
	}
	info := &onnxInfo{Opset: -1}
	var graph []byte
	for _, f := range fields {
		switch {
		case f.num == modelIRVersion && f.wire == wireVarint:
			info.IRVersion = int64(f.value)
		case f.num == modelGraph && f.wire == wireLen:
			if graph != nil {
				return nil, errors.New("not an ONNX model: more than one graph")
			}
			graph = f.data
		case f.num == modelOpsetImport && f.wire == wireLen:
			sub, err := pbFields(f.data)
			if err != nil {
				return nil, fmt.Errorf("not an ONNX model: opset_import: %w", err)
			}
			domain, version := "", int64(-1)
			for _, s := range sub {
				if s.num == opsetDomain && s.wire == wireLen {
					domain = string(s.data)
				}
				if s.num == opsetVersion && s.wire == wireVarint {
					version = int64(s.value)
				}
			}
			if (domain == "" || domain == "ai.onnx") && version >= 0 {
				info.Opset = version
			}
		}
	}
	if info.IRVersion < 1 || info.IRVersion > maxSupportedIRVer {
		return nil, fmt.Errorf("not an ONNX model: ir_version %d", info.IRVersion)
	}
	if graph == nil {
		return nil, errors.New("not an ONNX model: no graph")
	}
	if err := info.readGraph(graph); err != nil {
		return nil, fmt.Errorf("ONNX graph: %w", err)
	}
	return info, nil
}

func (info *onnxInfo) readGraph(graph []byte) error {
	fields, err := pbFields(graph)
	if err != nil {
		return err
	}
	initializers := map[string]bool{}
	seenOp := map[string]bool{}
	var inputs []valueInfo
	for _, f := range fields {
		if f.wire != wireLen {
			continue
		}
		switch f.num {
		case graphNode:
			sub, err := pbFields(f.data)
			if err != nil {
				return fmt.Errorf("node %d: %w", info.Nodes, err)
			}
			info.Nodes++
			for _, s := range sub {
				if s.num == nodeOpType && s.wire == wireLen && !seenOp[string(s.data)] {
					seenOp[string(s.data)] = true
					info.OpTypes = append(info.OpTypes, string(s.data))
				}
			}
		case graphInitializer:
			sub, err := pbFields(f.data)
			if err != nil {
				return fmt.Errorf("initializer: %w", err)
			}
			for _, s := range sub {
				if s.num == tensorProtoName && s.wire == wireLen {
					initializers[string(s.data)] = true
				}
			}
		case graphInput, graphOutput:
			v, err := readValueInfo(f.data)
			if err != nil {
				return err
			}
			if f.num == graphInput {
				inputs = append(inputs, v)
			} else {
				info.Outputs = append(info.Outputs, v)
			}
		}
	}
	for _, v := range inputs { // before IR 4 weights were listed as inputs too
		if !initializers[v.Name] {
			info.Inputs = append(info.Inputs, v)
		}
	}
	switch {
	case info.Nodes == 0:
		return errors.New("graph has no nodes")
	case len(info.Inputs) == 0:
		return errors.New("graph has no inputs")
	case len(info.Outputs) == 0:
		return errors.New("graph has no outputs")
	}
	return nil
}

func readValueInfo(msg []byte) (valueInfo, error) {
	var v valueInfo
	fields, err := pbFields(msg)
	if err != nil {
		return v, fmt.Errorf("value info: %w", err)
	}
	for _, f := range fields {
		if f.num == valueInfoName && f.wire == wireLen {
			v.Name = string(f.data)
		}
	}
	for _, f := range fields {
		if f.num != valueInfoType || f.wire != wireLen {
			continue
		}
		dims, err := readTensorShape(f.data)
		if err != nil {
			return v, fmt.Errorf("value %q: %w", v.Name, err)
		}
		v.Dims = dims
	}
	return v, nil
}

// readTensorShape reads TypeProto.tensor_type.shape; nil when absent.
func readTensorShape(typeProto []byte) ([]int64, error) {
	fields, err := pbFields(typeProto)
	if err != nil {
		return nil, err
	}
	for _, f := range fields {
		if f.num != typeTensor || f.wire != wireLen {
			continue
		}
		tfields, err := pbFields(f.data)
		if err != nil {
			return nil, err
		}
		for _, tf := range tfields {
			if tf.num != tensorTypeShape || tf.wire != wireLen {
				continue
			}
			sfields, err := pbFields(tf.data)
			if err != nil {
				return nil, err
			}
			dims := []int64{}
			for _, sf := range sfields {
				if sf.num != shapeDim || sf.wire != wireLen {
					continue
				}
				dfields, err := pbFields(sf.data)
				if err != nil {
					return nil, err
				}
				d := int64(-1)
				for _, df := range dfields {
					if df.num == dimValue && df.wire == wireVarint {
						d = int64(df.value)
					}
				}
				dims = append(dims, d)
			}
			return dims, nil
		}
	}
	return nil, nil
}

// checkDeclared compares the model's declared input and output with what the
// detector needs. Undeclared or symbolic dimensions pass; the child process
// check measures the real output.
func (info *onnxInfo) checkDeclared(want ModelSpec) error {
	if len(info.Inputs) != 1 {
		names := make([]string, len(info.Inputs))
		for i, v := range info.Inputs {
			names[i] = v.Name
		}
		return fmt.Errorf("model has %d inputs (%s), want 1", len(info.Inputs), strings.Join(names, ", "))
	}
	wantIn := []int64{1, int64(want.InputChannels), int64(want.InputHeight), int64(want.InputWidth)}
	if in := info.Inputs[0]; in.Dims != nil && !dimsMatch(in.Dims, wantIn) {
		return fmt.Errorf("model input %s, want %s", in, dimsString(wantIn))
	}
	if len(info.Outputs) != 1 {
		return fmt.Errorf("model has %d outputs, want 1", len(info.Outputs))
	}
	wantOut := make([]int64, len(want.OutputShape))
	for i, d := range want.OutputShape {
		wantOut[i] = int64(d)
	}
	if out := info.Outputs[0]; out.Dims != nil && !dimsMatch(out.Dims, wantOut) {
		return fmt.Errorf("model output %s, want %s", out, dimsString(wantOut))
	}
	return nil
}

func dimsMatch(got, want []int64) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i] >= 0 && got[i] != want[i] {
			return false
		}
	}
	return true
}
