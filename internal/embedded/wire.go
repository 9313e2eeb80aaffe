package embedded

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"go.mongodb.org/mongo-driver/v2/bson"
)

// MongoDB wire protocol constants (https://www.mongodb.com/docs/manual/reference/mongodb-wire-protocol/).
const (
	opMsg         = 2013
	headerLen     = 16
	maxMessageLen = 48 << 20 // maxMessageSizeBytes advertised by MongoDB

	flagChecksumPresent = 1 << 0
	flagMoreToCome      = 1 << 1
)

// message is one wire protocol message, kept as raw bytes so unknown messages pass through
// untouched.
type message struct {
	raw []byte // whole message including the header
}

func (m message) requestID() int32 { return int32(binary.LittleEndian.Uint32(m.raw[4:8])) }
func (m message) opCode() int32    { return int32(binary.LittleEndian.Uint32(m.raw[12:16])) }

// readMessage reads one length-prefixed message.
func readMessage(r io.Reader) (message, error) {
	var hdr [headerLen]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return message{}, err
	}
	n := int(int32(binary.LittleEndian.Uint32(hdr[0:4])))
	if n < headerLen || n > maxMessageLen {
		return message{}, fmt.Errorf("wire message length %d out of range", n)
	}
	raw := make([]byte, n)
	copy(raw, hdr[:])
	if _, err := io.ReadFull(r, raw[headerLen:]); err != nil {
		return message{}, err
	}
	return message{raw: raw}, nil
}

// opMsg is a parsed OP_MSG: its flags, the body document (section kind 0) and the document
// sequences (section kind 1) by identifier.
type parsedMsg struct {
	flags     uint32
	body      bson.Raw
	sequences map[string][]bson.Raw
	seqOrder  []string
}

var errNotOpMsg = errors.New("not an OP_MSG")

func parseOpMsg(m message) (*parsedMsg, error) {
	if m.opCode() != opMsg {
		return nil, errNotOpMsg
	}
	b := m.raw[headerLen:]
	if len(b) < 4 {
		return nil, errors.New("short OP_MSG")
	}
	p := &parsedMsg{flags: binary.LittleEndian.Uint32(b[:4]), sequences: map[string][]bson.Raw{}}
	b = b[4:]
	if p.flags&flagChecksumPresent != 0 {
		if len(b) < 4 {
			return nil, errors.New("short OP_MSG checksum")
		}
		b = b[:len(b)-4]
	}
	for len(b) > 0 {
		kind := b[0]
		b = b[1:]
		switch kind {
		case 0:
			doc, rest, err := readDoc(b)
			if err != nil {
				return nil, err
			}
			p.body, b = doc, rest
		case 1:
			if len(b) < 4 {
				return nil, errors.New("short document sequence")
			}
			size := int(int32(binary.LittleEndian.Uint32(b[:4])))
			if size < 5 || size > len(b) {
				return nil, errors.New("document sequence size out of range")
			}
			seq := b[4:size]
			b = b[size:]
			i := 0
			for i < len(seq) && seq[i] != 0 {
				i++
			}
			if i == len(seq) {
				return nil, errors.New("unterminated sequence identifier")
			}
			id := string(seq[:i])
			seq = seq[i+1:]
			var docs []bson.Raw
			for len(seq) > 0 {
				doc, rest, err := readDoc(seq)
				if err != nil {
					return nil, err
				}
				docs = append(docs, doc)
				seq = rest
			}
			p.sequences[id] = docs
			p.seqOrder = append(p.seqOrder, id)
		default:
			return nil, fmt.Errorf("unknown OP_MSG section kind %d", kind)
		}
	}
	if p.body == nil {
		return nil, errors.New("OP_MSG without body")
	}
	return p, nil
}

func readDoc(b []byte) (bson.Raw, []byte, error) {
	if len(b) < 5 {
		return nil, nil, errors.New("short BSON document")
	}
	n := int(int32(binary.LittleEndian.Uint32(b[:4])))
	if n < 5 || n > len(b) {
		return nil, nil, errors.New("BSON document length out of range")
	}
	doc := bson.Raw(b[:n])
	if err := doc.Validate(); err != nil {
		return nil, nil, err
	}
	return doc, b[n:], nil
}

// encode builds an OP_MSG with the given request id and responseTo. Checksums are never
// written (the flag is cleared); moreToCome is kept from flags.
func (p *parsedMsg) encode(requestID, responseTo int32) []byte {
	out := make([]byte, headerLen, headerLen+len(p.body)+64)
	binary.LittleEndian.PutUint32(out[4:8], uint32(requestID))
	binary.LittleEndian.PutUint32(out[8:12], uint32(responseTo))
	binary.LittleEndian.PutUint32(out[12:16], opMsg)
	out = binary.LittleEndian.AppendUint32(out, p.flags&^flagChecksumPresent)
	out = append(out, 0)
	out = append(out, p.body...)
	for _, id := range p.seqOrder {
		docs := p.sequences[id]
		size := 4 + len(id) + 1
		for _, d := range docs {
			size += len(d)
		}
		out = append(out, 1)
		out = binary.LittleEndian.AppendUint32(out, uint32(size))
		out = append(out, id...)
		out = append(out, 0)
		for _, d := range docs {
			out = append(out, d...)
		}
	}
	binary.LittleEndian.PutUint32(out[0:4], uint32(len(out)))
	return out
}

// commandName returns the first key of a command document, which names the command.
func commandName(body bson.Raw) string {
	elems, err := body.Elements()
	if err != nil || len(elems) == 0 {
		return ""
	}
	return elems[0].Key()
}
