package nanomdm

import (
	"os"
	"reflect"
	"regexp"
	"testing"

	"github.com/micromdm/plist"
)

// uuidV8 is the RFC 9562 text form of a version 8 UUID with the RFC variant, lower case.
var uuidV8 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-8[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestCommandUUID(t *testing.T) {
	t.Run("the same name always yields the same UUID", func(t *testing.T) {
		if a, b := commandUUID(kindRemoveApp, "k"), commandUUID(kindRemoveApp, "k"); a != b {
			t.Fatalf("%s != %s", a, b)
		}
	})
	t.Run("every kind and name yields a distinct version 8 UUID that reads back its kind", func(t *testing.T) {
		seen := map[string]bool{}
		for _, k := range []kind{kindRemoveApp, kindErase, kindVerify, kindCheckOut} {
			for _, name := range []string{"", "job-1", "job-2", "acme\x00job-1\x00ch.threema.work.iapp"} {
				u := commandUUID(k, name)
				if !uuidV8.MatchString(u) {
					t.Errorf("commandUUID(%d, %q) = %s, not a version 8 UUID", k, name, u)
				}
				if seen[u] {
					t.Errorf("commandUUID(%d, %q) = %s repeats", k, name, u)
				}
				seen[u] = true
				if got, ok := commandKind(u); !ok || got != k {
					t.Errorf("commandKind(%s) = %d, %v; want %d", u, got, ok, k)
				}
			}
		}
	})
	t.Run("other tools' command UUIDs are not taken for ours", func(t *testing.T) {
		ours := commandUUID(kindRemoveApp, "job")
		for _, id := range []string{
			"75b93457-265e-4913-a5b9-7f43085388cc", // captured, random version 4
			"e8ee749f-fdd5-496c-9107-6e3af2979b84",
			"offb-7f3c-ch.threema.work.iapp-removeapp",
			"",
			ours[:35],
			ours + "0",
			"00000000-0000-850b-8000-000000000000", // kind 5 does not exist
			"00000000-0000-810c-8000-000000000000", // wrong marker
			"00000000-0000-810b-c000-000000000000", // wrong variant
			"00000000-0000-810B-8000-00000000000A", // upper case is not what we send
		} {
			if k, ok := commandKind(id); ok {
				t.Errorf("commandKind(%q) = %d, want not ours", id, k)
			}
		}
	})
}

func FuzzCommandKind(f *testing.F) {
	f.Add(commandUUID(kindErase, "x"))
	f.Add("75b93457-265e-4913-a5b9-7f43085388cc")
	f.Fuzz(func(t *testing.T, id string) {
		k, ok := commandKind(id)
		if ok && (!uuidV8.MatchString(id) || k < kindRemoveApp || k > kindCheckOut) {
			t.Fatalf("commandKind(%q) accepted a malformed id as kind %d", id, k)
		}
	})
}

// decodePlist reads a command plist into generic values.
func decodePlist(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := plist.Unmarshal(b, &m); err != nil {
		t.Fatalf("decoding plist: %v\n%s", err, b)
	}
	return m
}

func TestPayloadsAreApplesCommands(t *testing.T) {
	const id = "00000000-0000-810b-8000-000000000000"
	tests := []struct {
		name    string
		got     []byte
		goldens []string
	}{
		{"RemoveApplication names the bundle id as Apple documents and NanoMDM hands it out",
			removeApplication(id, "ch.threema.work.iapp"),
			[]string{"testdata/apple-RemoveApplication.plist", "testdata/nanomdm-cmd-removeapp.plist"}},
		{"EraseDevice keeps the data plan and allows proximity setup",
			eraseDevice(id),
			[]string{"testdata/apple-EraseDevice.plist"}},
		{"ManagedApplicationList asks for the bundle id alone",
			managedApplicationList(id, "ch.threema.work.iapp"),
			[]string{"testdata/apple-ManagedApplicationList.plist"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := decodePlist(t, tt.got)
			if got["CommandUUID"] != id {
				t.Errorf("CommandUUID = %v, want %s", got["CommandUUID"], id)
			}
			for _, path := range tt.goldens {
				raw, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				want := decodePlist(t, raw)
				if !reflect.DeepEqual(got["Command"], want["Command"]) {
					t.Errorf("Command = %#v\nwant (%s) %#v", got["Command"], path, want["Command"])
				}
			}
		})
	}
}
