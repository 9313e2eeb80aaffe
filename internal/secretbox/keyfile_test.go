package secretbox

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestLoadOrCreateKeyFile(t *testing.T) {
	t.Run("a missing key file is created 0600 in a 0700 directory and reported", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "data", "secret.key")
		kr, created, err := LoadOrCreateKeyFile(path)
		if err != nil || !created || kr == nil {
			t.Fatalf("created %v, %v", created, err)
		}
		st, _ := os.Stat(path)
		if st.Mode().Perm() != 0o600 {
			t.Errorf("file mode %04o", st.Mode().Perm())
		}
		dir, _ := os.Stat(filepath.Dir(path))
		if dir.Mode().Perm() != 0o700 {
			t.Errorf("dir mode %04o", dir.Mode().Perm())
		}
		entries, _ := os.ReadDir(filepath.Dir(path))
		if len(entries) != 1 {
			t.Errorf("left temporary files: %v", entries)
		}

		again, created, err := LoadOrCreateKeyFile(path)
		if err != nil || created || again.CurrentKeyID() != kr.CurrentKeyID() {
			t.Fatalf("second load: created %v, %v", created, err)
		}
		env, _ := kr.Seal([]byte("x"), nil)
		if _, err := again.Open(env, nil); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("a group- or world-accessible key file is refused", func(t *testing.T) {
		for _, mode := range []os.FileMode{0o640, 0o604, 0o660, 0o644, 0o700 | 0o010} {
			path := filepath.Join(t.TempDir(), "secret.key")
			if err := os.WriteFile(path, []byte(GenerateKey()), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, mode); err != nil {
				t.Fatal(err)
			}
			if _, _, err := LoadOrCreateKeyFile(path); !errors.Is(err, ErrInsecureKeyFile) {
				t.Errorf("mode %04o: got %v", mode, err)
			}
		}
	})
	t.Run("a key file with several keys gives a rotation keyring", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "secret.key")
		os.WriteFile(path, []byte(b64(key(7))+"\n"+b64(key(8))+"\n"), 0o600)
		kr, created, err := LoadOrCreateKeyFile(path)
		if err != nil || created || len(kr.KeyIDs()) != 2 || kr.CurrentKeyID() != KeyID(key(7)) {
			t.Fatalf("created %v, %v", created, err)
		}
	})
	t.Run("a corrupt key file is an error, never silently replaced", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "secret.key")
		os.WriteFile(path, []byte("garbage"), 0o600)
		if _, _, err := LoadOrCreateKeyFile(path); !errors.Is(err, ErrInvalidKey) {
			t.Fatalf("got %v", err)
		}
		b, _ := os.ReadFile(path)
		if string(b) != "garbage" {
			t.Fatal("file was replaced")
		}
	})
	t.Run("a directory in place of the key file is refused", func(t *testing.T) {
		path := t.TempDir()
		if _, _, err := LoadOrCreateKeyFile(path); err == nil {
			t.Fatal("no error")
		}
	})
}

func TestLoad(t *testing.T) {
	t.Run("the environment value wins over the key file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "secret.key")
		kr, created, err := Load(b64(key(1))+","+b64(key(2)), path)
		if err != nil || created || kr.CurrentKeyID() != KeyID(key(1)) {
			t.Fatalf("created %v, %v", created, err)
		}
		if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
			t.Fatal("key file created although the environment had keys")
		}
	})
	t.Run("a bad environment value is an error naming the variable", func(t *testing.T) {
		_, _, err := Load("short", filepath.Join(t.TempDir(), "k"))
		if !errors.Is(err, ErrInvalidKey) || err.Error()[:len(EnvKey)] != EnvKey {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("without the environment value the key file is created", func(t *testing.T) {
		_, created, err := Load("", filepath.Join(t.TempDir(), "k"))
		if err != nil || !created {
			t.Fatalf("created %v, %v", created, err)
		}
	})
}
