package detect

import "fmt"

// A hand-written protobuf encoder, enough to build tiny ONNX models in
// tests: a single-node graph with one input and one output.

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

// tinyModel describes a one-node ONNX model.
type tinyModel struct {
	op        string
	inDims    []int64 // nil: no shape declared
	outDims   []int64 // nil: no shape declared
	irVersion uint64
	opset     uint64
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

// encode returns the ModelProto bytes.
func (m tinyModel) encode() []byte {
	if m.irVersion == 0 {
		m.irVersion = 7
	}
	if m.opset == 0 {
		m.opset = 13
	}
	node := pb{}.str(1, "images").str(2, "output").str(3, "node0").str(nodeOpType, m.op)
	graph := pb{}.bytes(graphNode, node).
		str(2, "tiny").
		bytes(graphInput, valueInfoProto("images", m.inDims)).
		bytes(graphOutput, valueInfoProto("output", m.outDims))
	return pb{}.varint(modelIRVersion, m.irVersion).
		str(2, "xl-detect-test").
		bytes(modelGraph, graph).
		bytes(modelOpsetImport, pb{}.str(opsetDomain, "").varint(opsetVersion, m.opset))
}
