// Package onnxtest builds tiny ONNX models for tests: a one-node graph with
// one input and one output, with or without declared shapes. It is enough
// to make files that are valid ONNX yet wrong for the detector (another
// input size, another output shape, an operator OpenCV does not know).
package onnxtest

import "fmt"

// Field numbers of the ONNX protobuf messages used here (onnx.proto).
const (
	modelIRVersion   = 1
	modelProducer    = 2
	modelGraph       = 7
	modelOpsetImport = 8
	opsetDomain      = 1
	opsetVersion     = 2
	graphNode        = 1
	graphName        = 2
	graphInput       = 11
	graphOutput      = 12
	nodeInput        = 1
	nodeOutput       = 2
	nodeName         = 3
	nodeOpType       = 4
	valueInfoName    = 1
	valueInfoType    = 2
	typeTensor       = 1
	tensorTypeElem   = 1
	tensorTypeShape  = 2
	shapeDim         = 1
	dimValue         = 1
	dimParam         = 2

	wireVarint = 0
	wireLen    = 2
)

// pb is a protobuf message being encoded.
type pb []byte

func (p pb) tag(field, wire int) pb { return p.uvarint(uint64(field)<<3 | uint64(wire)) }

func (p pb) uvarint(v uint64) pb {
	for v >= 0x80 {
		p = append(p, byte(v)|0x80)
		v >>= 7
	}
	return append(p, byte(v))
}

// varint appends a varint field.
func (p pb) varint(field int, v uint64) pb { return p.tag(field, wireVarint).uvarint(v) }

// bytes appends a length-delimited field (a string, bytes or a sub-message).
func (p pb) bytes(field int, b []byte) pb {
	return append(p.tag(field, wireLen).uvarint(uint64(len(b))), b...)
}

func (p pb) str(field int, s string) pb { return p.bytes(field, []byte(s)) }

// Tiny describes a one-node ONNX model: input "images" → Op → "output".
type Tiny struct {
	Op        string
	InDims    []int64 // nil: no shape declared
	OutDims   []int64 // nil: no shape declared; a negative dimension is symbolic
	IRVersion uint64  // default 7
	Opset     uint64  // default 13
}

// valueInfoProto encodes a float tensor value, with a shape when dims != nil;
// a negative dimension is symbolic (dim_param "dN").
func valueInfoProto(name string, dims []int64) []byte {
	tensor := pb{}.varint(tensorTypeElem, 1) // FLOAT
	if dims != nil {
		shape := pb{}
		for i, d := range dims {
			if d < 0 {
				shape = shape.bytes(shapeDim, pb{}.str(dimParam, fmt.Sprintf("d%d", i)))
				continue
			}
			shape = shape.bytes(shapeDim, pb{}.varint(dimValue, uint64(d)))
		}
		tensor = tensor.bytes(tensorTypeShape, shape)
	}
	typ := pb{}.bytes(typeTensor, tensor)
	return pb{}.str(valueInfoName, name).bytes(valueInfoType, typ)
}

// Encode returns the ModelProto bytes.
func (m Tiny) Encode() []byte {
	if m.IRVersion == 0 {
		m.IRVersion = 7
	}
	if m.Opset == 0 {
		m.Opset = 13
	}
	node := pb{}.str(nodeInput, "images").str(nodeOutput, "output").str(nodeName, "node0").str(nodeOpType, m.Op)
	graph := pb{}.bytes(graphNode, node).
		str(graphName, "tiny").
		bytes(graphInput, valueInfoProto("images", m.InDims)).
		bytes(graphOutput, valueInfoProto("output", m.OutDims))
	return pb{}.varint(modelIRVersion, m.IRVersion).
		str(modelProducer, "xl-detect-test").
		bytes(modelGraph, graph).
		bytes(modelOpsetImport, pb{}.str(opsetDomain, "").varint(opsetVersion, m.Opset))
}
