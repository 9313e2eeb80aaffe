package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/offboard/offboard/internal/embedded"
)

// backup copies the embedded store's databases (a consistent snapshot, while the server runs)
// and the secret key file into an empty directory.
func backup(args []string) error {
	fs := flag.NewFlagSet("backup", flag.ContinueOnError)
	data := fs.String("data", env("OFFBOARD_DATA", "./offboard-data"), "data directory of the server (OFFBOARD_DATA)")
	out := fs.String("out", "", "empty directory to write the backup to")
	keyFile := fs.String("secret-key-file", env("OFFBOARD_SECRET_KEY_FILE", ""), "key file (default <data>/secret.key)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" {
		return errors.New("--out is required")
	}
	files, err := embedded.Backup(context.Background(), filepath.Join(*data, "store"), filepath.Join(*out, "store", "db"))
	if err != nil {
		return err
	}
	for _, f := range files {
		fmt.Println("wrote", f)
	}
	kf := *keyFile
	if kf == "" {
		kf = filepath.Join(*data, "secret.key")
	}
	key, err := os.ReadFile(kf)
	if errors.Is(err, os.ErrNotExist) {
		fmt.Println("no key file at", kf, "(keys come from OFFBOARD_SECRET_KEY): back it up separately")
		return nil
	}
	if err != nil {
		return err
	}
	target := filepath.Join(*out, "secret.key")
	if err := os.WriteFile(target, key, 0o600); err != nil {
		return err
	}
	fmt.Println("wrote", target)
	return nil
}
