//go:build !unix

package service

import "os"

// devIno is never true off Unix: there is no journal.
func devIno(*os.File) (dev, ino uint64, ok bool) { return 0, 0, false }
