package secretbox

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
)

// maxKeyFile bounds a key file: a few dozen keys at most.
const maxKeyFile = 64 << 10

// Load returns the keyring the server should use: from envValue (the content of
// OFFBOARD_SECRET_KEY) when it is set, otherwise from the key file at path,
// created with a fresh key if missing. created reports that a new key was
// generated; the server should log that once, since losing the file loses every
// stored secret.
func Load(envValue, path string) (kr *Keyring, created bool, err error) {
	if envValue != "" {
		kr, err := ParseKeys(envValue)
		if err != nil {
			return nil, false, fmt.Errorf("%s: %w", EnvKey, err)
		}
		return kr, false, nil
	}
	return LoadOrCreateKeyFile(path)
}

// LoadOrCreateKeyFile reads a key file (the text form of ParseKeys, one key a
// line, current first). If the file does not exist it generates a random key and
// writes it atomically with mode 0600, creating missing parent directories with
// mode 0700, and reports created. A key file that group or others may read,
// write or execute is refused with ErrInsecureKeyFile.
func LoadOrCreateKeyFile(path string) (kr *Keyring, created bool, err error) {
	kr, err = readKeyFile(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return kr, false, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, false, fmt.Errorf("create key file directory: %w", err)
	}
	if err := writeNewKeyFile(path, GenerateKey()+"\n"); err != nil {
		if errors.Is(err, fs.ErrExist) { // another process won the race: use its key
			kr, err = readKeyFile(path)
			return kr, false, err
		}
		return nil, false, err
	}
	kr, err = readKeyFile(path)
	return kr, err == nil, err
}

func readKeyFile(path string) (*Keyring, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open key file: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat key file: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("key file %s: not a regular file", path)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("key file %s has mode %04o, want 0600 or stricter: %w", path, st.Mode().Perm(), ErrInsecureKeyFile)
	}
	buf, err := io.ReadAll(io.LimitReader(f, maxKeyFile+1))
	if err != nil {
		return nil, fmt.Errorf("read key file: %w", err)
	}
	defer clear(buf)
	if len(buf) > maxKeyFile {
		return nil, fmt.Errorf("key file %s: too large: %w", path, ErrInvalidKey)
	}
	kr, err := ParseKeys(string(buf))
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	return kr, nil
}

// writeNewKeyFile writes content to a temporary file in the same directory,
// syncs it and links it into place, so path either does not exist or holds a
// complete key; an existing path is never overwritten (fs.ErrExist).
func writeNewKeyFile(path, content string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".offboard-key-*")
	if err != nil {
		return fmt.Errorf("create key file: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("create key file: %w", err)
	}
	if _, err := tmp.WriteString(content); err != nil {
		tmp.Close()
		return fmt.Errorf("write key file: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("sync key file: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("close key file: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		return fmt.Errorf("install key file: %w", err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
