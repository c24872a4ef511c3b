module dslocal.test/gotemplate

go 1.22
