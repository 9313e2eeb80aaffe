package embedded

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
)

// Backup writes a consistent copy of every database of the store in dir (its Dir option) into
// out, while the store may keep running: SQLite's VACUUM INTO reads one snapshot of each file.
// Restoring is copying the files back into dir/db with the server stopped.
func Backup(ctx context.Context, dir, out string) ([]string, error) {
	files, err := filepath.Glob(filepath.Join(dir, "db", "*.sqlite"))
	if err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("no databases under %s", filepath.Join(dir, "db"))
	}
	if err := os.MkdirAll(out, 0o700); err != nil {
		return nil, err
	}
	var written []string
	for _, f := range files {
		target := filepath.Join(out, filepath.Base(f))
		if _, err := os.Stat(target); err == nil {
			return written, fmt.Errorf("%s exists; back up into an empty directory", target)
		}
		q := url.Values{}
		q.Add("_pragma", "busy_timeout(10000)")
		conn, err := sql.Open("sqlite", (&url.URL{Scheme: "file", Opaque: f, RawQuery: q.Encode() + "&mode=ro"}).String())
		if err != nil {
			return written, err
		}
		_, err = conn.ExecContext(ctx, "VACUUM INTO '"+strings.ReplaceAll(target, "'", "''")+"'")
		conn.Close()
		if err != nil {
			return written, fmt.Errorf("back up %s: %w", filepath.Base(f), err)
		}
		if err := os.Chmod(target, 0o600); err != nil {
			return written, err
		}
		written = append(written, target)
	}
	return written, nil
}
