package lifecycle

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
)

// workIDAlphabet is the alphabet of messenger IDs: 8 characters from A–Z0–9 (36^8 ≈ 2.8e12).
const workIDAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"

// WorkIDLength is the length of a messenger ID.
const WorkIDLength = 8

// NewWorkID draws a messenger ID uniformly from the alphabet with crypto/rand (rejection
// sampling, no modulo bias). Uniqueness is enforced by the registry, not by chance.
func NewWorkID() string {
	var out [WorkIDLength]byte
	var buf [16]byte
	i := 0
	for i < WorkIDLength {
		if _, err := rand.Read(buf[:]); err != nil {
			panic(fmt.Sprintf("crypto/rand failed: %v", err))
		}
		for _, b := range buf {
			if int(b) >= 256-256%len(workIDAlphabet) { // 252..255 would bias
				continue
			}
			out[i] = workIDAlphabet[int(b)%len(workIDAlphabet)]
			i++
			if i == WorkIDLength {
				break
			}
		}
	}
	return string(out[:])
}

// ValidWorkID reports whether s has the shape of a messenger ID.
func ValidWorkID(s string) bool {
	if len(s) != WorkIDLength {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !strings.ContainsRune(workIDAlphabet, rune(s[i])) {
			return false
		}
	}
	return true
}

// NewID returns a random 128-bit identifier in hex (SCIM ids, tenant ids, audit ids).
func NewID() string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("crypto/rand failed: %v", err))
	}
	return hex.EncodeToString(b[:])
}

// jobID builds the deterministic id of a job: generation, action and target. It contains no
// '.' or '$' so it is a valid document key.
func jobID(gen int, action string, target ...string) string {
	id := fmt.Sprintf("g%d:%s", gen, action)
	for _, t := range target {
		id += ":" + sanitize(t)
	}
	return id
}

// sanitize maps a target (connector id, device id) into a key-safe token; long or unusual ids
// are replaced by a hash so different targets never collide.
func sanitize(s string) string {
	ok := len(s) <= 64
	for i := 0; ok && i < len(s); i++ {
		c := s[i]
		ok = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_'
	}
	if ok && s != "" {
		return s
	}
	sum := sha256.Sum256([]byte(s))
	return "h" + hex.EncodeToString(sum[:12])
}

// idempotencyKey is the key sent with every external call of a job: stable across retries and
// restarts, unique per employee, job (generation, action, target).
func idempotencyKey(employee, job string) string {
	sum := sha256.Sum256([]byte(employee + "/" + job))
	return hex.EncodeToString(sum[:16])
}

// seatOp is the seat operation id of a job, unique per employee and generation.
func seatOp(employee string, gen int, kind string) string {
	return fmt.Sprintf("%s-g%d-%s", employee, gen, kind)
}
