package nanomdm

import (
	"crypto/sha256"
	"encoding/hex"

	"github.com/micromdm/plist"
)

// kind is the sort of command a CommandUUID stands for. It is written into the UUID itself,
// because NanoMDM's webhook reports only the UUID, not the command that was sent.
type kind byte

const (
	kindRemoveApp kind = 1 // RemoveApplication
	kindErase     kind = 2 // EraseDevice
	kindVerify    kind = 3 // ManagedApplicationList after RemoveApplication
	// kindCheckOut is no command but the command-log entry saying that an enrollment checked
	// out (done) or enrolled again after that (pending); see checkOutID.
	kindCheckOut kind = 4
)

// resultID is the command-log id of the answer enrollmentID gave to command uuid. Binding the
// answer to the enrollment that NanoMDM authenticated (by its client certificate) means one
// device cannot report a result for a command sent to another.
func resultID(uuid, enrollmentID string) string {
	return uuid + "@" + enrollmentID
}

// verifiesID is the command-log id of the entry linking a verification (ManagedApplicationList)
// to the removal it verifies: its Detail is the removal's CommandUUID.
func verifiesID(verifyUUID string) string {
	return verifyUUID + "/verifies"
}

// checkOutID is the command-log id under which the webhook records that enrollment id checked
// out of NanoMDM.
func checkOutID(enrollmentID string) string {
	return commandUUID(kindCheckOut, enrollmentID)
}

// uuidMarker is the fixed byte after the version nibble that marks Offboard's UUIDs.
const uuidMarker = 0x0b

// commandUUID derives a CommandUUID from name. It is an RFC 9562 version 8 UUID:
// the bytes are SHA-256 of name; the version nibble is 8, the next nibble is the kind and the
// byte after it is 0x0b: a RemoveApplication (kind 1) reads like 5f3a9c1e-77d0-810b-9a4e-…,
// where "810b" is version 8, kind 1, marker 0b, and the variant bits make the next group start
// with 8-b. The same name always yields the same UUID, which is what makes a retried enqueue a
// duplicate.
func commandUUID(k kind, name string) string {
	h := sha256.Sum256([]byte("offboard/nanomdm/command/v1\x00" + string(rune('0'+k)) + "\x00" + name))
	var u [16]byte
	copy(u[:], h[:16])
	u[6] = 0x80 | byte(k)
	u[7] = uuidMarker
	u[8] = 0x80 | u[8]&0x3f
	var b [36]byte
	hex.Encode(b[0:8], u[0:4])
	b[8] = '-'
	hex.Encode(b[9:13], u[4:6])
	b[13] = '-'
	hex.Encode(b[14:18], u[6:8])
	b[18] = '-'
	hex.Encode(b[19:23], u[8:10])
	b[23] = '-'
	hex.Encode(b[24:36], u[10:16])
	return string(b[:])
}

// commandKind tells whether id has the shape commandUUID produces, and of which kind. Other
// tools' commands on the same NanoMDM server (random version 4 UUIDs) never match.
func commandKind(id string) (kind, bool) {
	if len(id) != 36 || id[8] != '-' || id[13] != '-' || id[18] != '-' || id[23] != '-' {
		return 0, false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if i == 8 || i == 13 || i == 18 || i == 23 {
			continue
		}
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return 0, false
		}
	}
	if id[14] != '8' || id[16:18] != "0b" || !(id[19] == '8' || id[19] == '9' || id[19] == 'a' || id[19] == 'b') {
		return 0, false
	}
	k := kind(id[15] - '0')
	if k < kindRemoveApp || k > kindCheckOut {
		return 0, false
	}
	return k, true
}

// command is the raw MDM command plist NanoMDM enqueues as is.
type command[T any] struct {
	Command     T      `plist:"Command"`
	CommandUUID string `plist:"CommandUUID"`
}

type removeApplicationCommand struct {
	RequestType string `plist:"RequestType"`
	Identifier  string `plist:"Identifier"`
}

type eraseDeviceCommand struct {
	RequestType            string `plist:"RequestType"`
	PreserveDataPlan       bool   `plist:"PreserveDataPlan"`
	DisallowProximitySetup bool   `plist:"DisallowProximitySetup"`
}

type managedApplicationListCommand struct {
	RequestType string   `plist:"RequestType"`
	Identifiers []string `plist:"Identifiers"`
}

// removeApplication removes a managed app; the device deletes the app's data container with it.
func removeApplication(uuid, bundleID string) []byte {
	return mustPlist(command[removeApplicationCommand]{
		Command:     removeApplicationCommand{RequestType: "RemoveApplication", Identifier: bundleID},
		CommandUUID: uuid,
	})
}

// eraseDevice erases the whole device, keeping the cellular data plan (eSIM) so the company's
// line survives. No PIN is sent: iOS ignores it, and Macs with Apple silicon or a T2 chip erase
// without one.
func eraseDevice(uuid string) []byte {
	return mustPlist(command[eraseDeviceCommand]{
		Command:     eraseDeviceCommand{RequestType: "EraseDevice", PreserveDataPlan: true},
		CommandUUID: uuid,
	})
}

// managedApplicationList asks for the managed-app status of bundleID alone.
func managedApplicationList(uuid, bundleID string) []byte {
	return mustPlist(command[managedApplicationListCommand]{
		Command:     managedApplicationListCommand{RequestType: "ManagedApplicationList", Identifiers: []string{bundleID}},
		CommandUUID: uuid,
	})
}

// mustPlist encodes v, whose types are fixed above and always encodable.
func mustPlist(v any) []byte {
	b, err := plist.MarshalIndent(v, "\t")
	if err != nil {
		panic("nanomdm: encoding a command plist: " + err.Error())
	}
	return b
}
