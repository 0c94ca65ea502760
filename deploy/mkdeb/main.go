// Command mkdeb builds the odoopbx-agent .deb for `make deb`. It is nfpm's deb packager used as a
// library, because nfpm's own command pulls in rpm and msix modules this project does not need.
//
//	go run ./deploy/mkdeb -version "$(git describe --tags --always --dirty)" \
//	    -arch amd64 -binary bin/odoopbx-agent -config deploy/nfpm.yaml -target dist
package main

import (
	"flag"
	"fmt"
	"os"
	"runtime"

	"github.com/odoopbx/odoopbx/deploy"
)

func main() {
	var opts deploy.DebOptions
	var describe string
	flag.StringVar(&opts.Config, "config", "deploy/nfpm.yaml", "nfpm configuration")
	flag.StringVar(&describe, "version", deploy.FallbackVersion, "version as git describe prints it; converted to a Debian version")
	flag.StringVar(&opts.Arch, "arch", runtime.GOARCH, "Go architecture of the binary")
	flag.StringVar(&opts.Binary, "binary", "bin/odoopbx-agent", "the built binary")
	flag.StringVar(&opts.TargetDir, "target", "dist", "output directory")
	flag.Parse()

	version, err := deploy.DebianVersion(describe)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkdeb:", err)
		os.Exit(1)
	}
	opts.Version = version
	path, err := deploy.BuildDeb(opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkdeb:", err)
		os.Exit(1)
	}
	fmt.Println(path)
}
