// Package dirs lists the folders of berth's state trees. The state folder
// (namespaces, bundles, FIFO folders) holds berth's own folders beside dot
// entries that are no object (the runtime's .runc, .spare): Names is the
// one reading of such a folder that the supervisor's Restore and berthd
// check share, so that check judges exactly the bundles Restore finds.
package dirs

import (
	"errors"
	"io/fs"
	"os"
	"strings"
)

// Names returns the names of the folders in dir that do not begin with a
// dot; none, and no error, when dir is missing.
func Names(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() && !strings.HasPrefix(e.Name(), ".") {
			names = append(names, e.Name())
		}
	}
	return names, nil
}
