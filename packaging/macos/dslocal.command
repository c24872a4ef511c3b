#!/bin/sh
# dslocal's TUI. Terminal.app runs a .command file when it is opened (double-click, or 'open FILE').
# A template: 'dslocal launcher install' (or 'dslocal launcher render macos DIR') fills in dslocal's path.
exec @DSLOCAL_EXE@ tui
