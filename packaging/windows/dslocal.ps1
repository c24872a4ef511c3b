# dslocal's TUI in a console window; the Start-menu shortcut "DeepSeek (dslocal)" runs this script.
# A template: 'dslocal launcher install' (or 'dslocal launcher render windows DIR') fills in dslocal's path.
$dslocal = @DSLOCAL_EXE@
& $dslocal tui
if ($LASTEXITCODE -ne 0) {
    Read-Host "dslocal exited with code $LASTEXITCODE; press Enter to close this window"
}
