# Creates the Start-menu shortcut "DeepSeek (dslocal)" that runs dslocal.ps1; with -Remove, deletes it.
# The user's Start menu programs folder is [Environment]::GetFolderPath('Programs')
# (%APPDATA%\Microsoft\Windows\Start Menu\Programs); the .lnk is written by the WScript.Shell COM object.
# A template: 'dslocal launcher install' fills in where dslocal.ps1 is.
param([switch]$Remove)
$ErrorActionPreference = 'Stop'
$script = @DSLOCAL_SCRIPT@
$link = Join-Path ([Environment]::GetFolderPath('Programs')) 'DeepSeek (dslocal).lnk'
if ($Remove) {
    if (Test-Path -LiteralPath $link) { Remove-Item -LiteralPath $link }
    return
}
$shell = New-Object -ComObject WScript.Shell
$shortcut = $shell.CreateShortcut($link)
$shortcut.TargetPath = Join-Path $env:SystemRoot 'System32\WindowsPowerShell\v1.0\powershell.exe'
$shortcut.Arguments = '-NoProfile -ExecutionPolicy Bypass -File "' + $script + '"'
$shortcut.WorkingDirectory = $env:USERPROFILE
$shortcut.Description = 'Run DeepSeek models on this machine through Ollama'
$shortcut.Save()
Write-Output $link
